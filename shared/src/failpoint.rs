//! Named points between the steps of create, rename, delete, restore and
//! purge where a test can
//! make the process die abruptly, as a Lambda killed at its timeout would.
//!
//! Compiled in only with the `failpoints` feature, which no release build
//! enables; without it [`hit`] is an empty inline function. With it, the
//! process aborts at the point named by the `ORG_FAILPOINT` variable.

/// Every failpoint, in the order the operations reach them.
pub const ALL: &[&str] = &[
    "create:after_org_insert",
    "create:after_admin_insert",
    "create:after_collection",
    "rename:after_claim",
    "rename:after_credentials",
    "rename:after_collection_rename",
    "delete:before_mark",
    "delete:after_mark",
    "delete:after_admins",
    "delete:after_drop",
    "soft_delete:after_record",
    "soft_delete:after_admins",
    "soft_delete:after_hold",
    "soft_delete:after_org_removed",
    "restore:after_claim",
    "restore:after_org_insert",
    "restore:after_admin_insert",
    "restore:after_collection",
    "restore:after_activate",
    "purge:after_claim",
    "purge:after_drop",
];

pub const ENV: &str = "ORG_FAILPOINT";

/// What happens at the named point: by default the process aborts. With
/// `wait:<path>` it creates `<path>.reached` and waits (up to a minute) for
/// `<path>.go`, so a test can change the world (stop the database, race another
/// request) mid-operation.
pub const ACTION_ENV: &str = "ORG_FAILPOINT_ACTION";

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    debug_assert!(ALL.contains(&name), "unknown failpoint {name}");
    if !std::env::var(ENV).is_ok_and(|v| v == name) {
        return;
    }
    match std::env::var(ACTION_ENV)
        .ok()
        .as_deref()
        .and_then(|a| a.strip_prefix("wait:"))
    {
        Some(path) => {
            let _ = std::fs::write(format!("{path}.reached"), name);
            let go = format!("{path}.go");
            for _ in 0..600 {
                if std::path::Path::new(&go).exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        None => {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
