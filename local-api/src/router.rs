//! The routing table: `[workspace.metadata.lambda.watch.router]` in the
//! workspace's Cargo.toml, the one place that says which function serves
//! which method and path locally (`shared/tests/openapi.rs` checks it against
//! the contract). Each entry is one line,
//! `"/path" = [{ method = "X", function = "f" }, ..]`: enough TOML for that
//! table, without a TOML parser in the build.

use std::collections::BTreeMap;

pub const TABLE: &str = "[workspace.metadata.lambda.watch.router]";

/// `(method, path)` → function (binary) name.
#[derive(Clone, Debug, Default)]
pub struct Router(BTreeMap<(String, String), String>);

impl Router {
    pub fn parse(manifest: &str) -> Result<Self, String> {
        let mut in_table = false;
        let mut routes = BTreeMap::new();
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_table = line == TABLE;
                continue;
            }
            if !in_table || line.is_empty() || line.starts_with('#') {
                continue;
            }
            let unreadable = || format!("{TABLE}: cannot read {line:?}");
            let (path, targets) = line.split_once('=').ok_or_else(unreadable)?;
            let path = path.trim().trim_matches('"').to_owned();
            for target in targets.split('{').skip(1) {
                let field = |name: &str| {
                    let rest = target.split_once(name)?.1;
                    let rest = rest.trim_start().strip_prefix('=')?;
                    rest.split('"').nth(1).map(str::to_owned)
                };
                let method = field("method").ok_or_else(unreadable)?;
                let function = field("function").ok_or_else(unreadable)?;
                routes.insert((method.to_ascii_uppercase(), path.clone()), function);
            }
        }
        if routes.is_empty() {
            return Err(format!("no routes under {TABLE}"));
        }
        Ok(Self(routes))
    }

    /// The function behind `method path`, if the route exists.
    pub fn function(&self, method: &str, path: &str) -> Option<&str> {
        self.0
            .get(&(method.to_owned(), path.to_owned()))
            .map(String::as_str)
    }

    /// Every function the table names, once each.
    pub fn functions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.values().cloned().collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_route_of_the_table_and_nothing_outside_it() {
        let manifest = r#"
[workspace]
members = ["x"]
[workspace.metadata.lambda.watch.router]
"/a" = [{ method = "POST", function = "one" }, { method = "get", function = "two" }]
# a comment
"/b" = [{ method = "DELETE", function = "one" }]
[profile.release]
"/c" = [{ method = "GET", function = "three" }]
"#;
        let router = Router::parse(manifest).unwrap();

        assert_eq!(router.function("POST", "/a"), Some("one"));
        assert_eq!(router.function("GET", "/a"), Some("two"));
        assert_eq!(router.function("DELETE", "/b"), Some("one"));
        assert_eq!(router.function("GET", "/c"), None);
        assert_eq!(router.functions(), ["one", "two"]);
    }

    #[test]
    fn a_manifest_without_the_table_is_refused() {
        assert!(Router::parse("[workspace]\n").is_err());
    }
}
