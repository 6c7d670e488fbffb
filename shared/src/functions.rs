//! The one table of the service's functions: each one's package (and binary)
//! name, the route it serves behind API Gateway, whether that route needs a
//! bearer token, and the configuration sections it reads. Dispatch
//! (`handlers::dispatch`), the template test, the check of `make run`'s router
//! in Cargo.toml, packaging and the benchmarks all read it (the scripts
//! through `functions/*`, which the template test holds equal to
//! [`Function::ALL`]). Adding a route is one entry here, its handler, and its
//! package.

use crate::config::Section;

/// Who may call a route, as the gateway checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (the route checks credentials in its body, if any).
    Public,
    /// An admin's bearer token, checked by the gateway authorizer and again
    /// by the function.
    Bearer,
    /// A SigV4-signed request of an IAM principal (`AWS_IAM`): operators.
    /// The function also refuses any event without the IAM identity.
    Iam,
}

/// A route of the public contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub auth: Auth,
}

/// The Lambda functions of this service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Login,
    Create,
    Get,
    /// `PUT /org/update`: renames the organization and/or changes its admin's
    /// credentials. Its package and binary keep the name `rename`: the
    /// template's `RenameFunction` (and its role, which the bus and key
    /// policies name) is what deployed stacks know, and renaming it would
    /// replace the function and its log group.
    Update,
    Delete,
    /// `POST /org/restore`: brings a deleted organization back.
    Restore,
    /// No route: an hourly schedule removes deleted organizations past their
    /// retention.
    Purge,
    /// `GET /org/audit`: the token's organization's audit trail.
    Audit,
    /// `GET /org/list`: every organization, for operators (IAM).
    List,
    Authorizer,
}

/// Which indexes a function ensures during init ([`Function::indexes_at_start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartIndexes {
    /// None: the function only opens its connection (a `ping`).
    None,
    /// The unique indexes of organizations and admins.
    Unique,
    /// Those, and the indexes of deleted organizations' records.
    UniqueAndDeleted,
    /// Every index, the expiry and outbox ones included.
    All,
}

impl Function {
    pub const ALL: [Function; 10] = [
        Function::Login,
        Function::Create,
        Function::Get,
        Function::Update,
        Function::Delete,
        Function::Restore,
        Function::Purge,
        Function::Audit,
        Function::List,
        Function::Authorizer,
    ];

    /// The package (and binary) name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Login => "login",
            Function::Create => "create",
            Function::Get => "get",
            Function::Update => "rename",
            Function::Delete => "delete",
            Function::Restore => "restore",
            Function::Purge => "purge",
            Function::Audit => "audit",
            Function::List => "list",
            Function::Authorizer => "authorizer",
        }
    }

    /// The route the function serves; the authorizer serves none (the
    /// gateway calls it before the bearer routes), nor does the purge (a
    /// schedule invokes it).
    pub fn route(self) -> Option<Route> {
        let route = |method, path, auth| Some(Route { method, path, auth });
        match self {
            Function::Login => route("POST", "/admin/login", Auth::Public),
            Function::Create => route("POST", "/org/create", Auth::Public),
            Function::Get => route("GET", "/org/get", Auth::Public),
            Function::Update => route("PUT", "/org/update", Auth::Bearer),
            Function::Delete => route("DELETE", "/org/delete", Auth::Bearer),
            Function::Restore => route("POST", "/org/restore", Auth::Public),
            Function::Audit => route("GET", "/org/audit", Auth::Bearer),
            Function::List => route("GET", "/org/list", Auth::Iam),
            Function::Purge | Function::Authorizer => None,
        }
    }

    /// The function serving `method` `path`, if any.
    pub fn for_route(method: &str, path: &str) -> Option<Function> {
        Self::ALL.into_iter().find(|f| {
            f.route()
                .is_some_and(|r| r.method == method && r.path == path)
        })
    }

    /// Every route of the contract, in table order.
    pub fn routes() -> impl Iterator<Item = (Function, Route)> {
        Self::ALL
            .into_iter()
            .filter_map(|f| f.route().map(|r| (f, r)))
    }

    pub fn sections(self) -> &'static [Section] {
        use Section::*;
        match self {
            Function::Login => &[Telemetry, Aws, Database, Tokens, Passwords, Audit],
            Function::Create => &[
                Telemetry,
                Aws,
                Database,
                Passwords,
                PasswordPolicy,
                Limits,
                Provisioning,
                Events,
                Audit,
            ],
            Function::Get => &[Telemetry, Aws, Database],
            Function::Update => &[
                Telemetry,
                Aws,
                Database,
                Tokens,
                Passwords,
                PasswordPolicy,
                CredentialChange,
                Events,
                Audit,
            ],
            Function::Delete => &[Telemetry, Aws, Database, Tokens, Events, Deletion, Audit],
            Function::Restore => &[Telemetry, Aws, Database, Passwords, Events, Audit],
            Function::Purge => &[Telemetry, Aws, Database, Events, Audit],
            Function::Audit => &[Telemetry, Aws, Database, Tokens],
            Function::List => &[Telemetry, Aws, Database, Audit],
            // The database too: a token issued before its admin's last
            // credential change is refused here as well as by the functions.
            Function::Authorizer => &[Telemetry, Aws, Database, Tokens],
        }
    }

    /// The indexes the function ensures while it starts, on the connection
    /// its first request then uses: create all of them (its request spends
    /// hundreds of milliseconds in bcrypt first), update the unique ones its
    /// rename claim relies on, the listing those and the deleted records'
    /// (it reads both sources in name order through them); the others none
    /// (a delete claims nothing; a restore builds its indexes while it
    /// checks the password, [`crate::store::Store::ensure_restore_indexes`],
    /// so that they do not hold up the reads before it).
    pub fn indexes_at_start(self) -> StartIndexes {
        match self {
            Function::Create => StartIndexes::All,
            Function::Update => StartIndexes::Unique,
            Function::List => StartIndexes::UniqueAndDeleted,
            _ => StartIndexes::None,
        }
    }

    /// Every variable this function reads.
    pub fn env_vars(self) -> Vec<&'static str> {
        crate::config::vars(self.sections()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_served_by_one_function() {
        for (f, r) in Function::routes() {
            assert_eq!(Function::for_route(r.method, r.path), Some(f));
        }
        assert_eq!(Function::for_route("GET", "/admin/login"), None);
        assert_eq!(Function::routes().count(), 8);
    }

    #[test]
    fn each_function_reads_exactly_its_declared_variables() {
        for f in Function::ALL {
            let mut read = Vec::new();
            let _ = crate::config::Config::from_lookup(f.sections(), |name| {
                read.push(name.to_owned());
                None
            });
            let declared: Vec<String> = f.env_vars().iter().map(|s| s.to_string()).collect();
            assert_eq!(read, declared, "{f:?}");
        }
    }
}
