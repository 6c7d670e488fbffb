//! Validated domain values: organization names, admin emails and passwords.
//!
//! Every value a client sends is parsed into one of these types before anything
//! touches the database; once parsed, a value is valid everywhere. The parsers are
//! pure (no I/O) so every rule has a unit test here. Nothing in this module knows
//! about HTTP or MongoDB beyond the namespace limits MongoDB imposes on names.

use std::fmt;

use crate::error::ApiError;

/// MongoDB's limit on a full namespace (`<database>.<collection>`), in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 255;
/// Every tenant collection is named `org_<name>`.
pub const COLLECTION_PREFIX: &str = "org_";
/// A hard cap on names regardless of the database name: names are identifiers
/// people type, and a short cap keeps every key and log line small.
pub const MAX_ORG_NAME_LEN: usize = 64;
/// Names that start with one of these are refused: they read like MongoDB's own
/// namespaces or could be mistaken for service internals.
pub const RESERVED_PREFIXES: &[&str] = &["system", "admin", "config", "local", "org_"];

/// An organization name: trimmed, lowercase ASCII letters, digits, `_` and `-`,
/// starting with a letter or digit, short enough that
/// `<tenant database>.org_<name>` fits MongoDB's namespace limit.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrgName(String);

impl OrgName {
    /// The longest name allowed when tenant collections live in `tenant_db`.
    pub fn max_len_for(tenant_db: &str) -> usize {
        let namespace_room =
            MAX_NAMESPACE_BYTES.saturating_sub(tenant_db.len() + 1 + COLLECTION_PREFIX.len());
        namespace_room.min(MAX_ORG_NAME_LEN)
    }

    /// Normalises and validates `raw`; the error names the rule that failed.
    pub fn parse(raw: &str, tenant_db: &str) -> Result<Self, ApiError> {
        let field = "organization_name";
        let name = Self::parse_prefix(raw, tenant_db, field)?;
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(ApiError::invalid(
                field,
                "must start with a letter or a digit",
            ));
        }
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| name.starts_with(**p)) {
            return Err(ApiError::invalid(
                field,
                format!("must not start with the reserved prefix '{prefix}'"),
            ));
        }
        Ok(Self(name))
    }

    /// Normalises and validates the start of a name (`field` names it in
    /// the error): not empty, only the characters a name may hold, and no
    /// longer than a name may be. A name is such a prefix with more rules.
    pub fn parse_prefix(raw: &str, tenant_db: &str, field: &str) -> Result<String, ApiError> {
        let name = raw.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(ApiError::invalid(
                field,
                format!(
                    "may contain only letters a-z, digits, '_' and '-' (found {})",
                    describe_char(bad)
                ),
            ));
        }
        let max = Self::max_len_for(tenant_db);
        if name.len() > max {
            return Err(ApiError::invalid(
                field,
                format!("must be at most {max} characters"),
            ));
        }
        Ok(name)
    }

    /// Rebuilds a name read back from the database, where it was stored after
    /// [`OrgName::parse`]; no validation is repeated.
    pub(crate) fn from_stored(name: String) -> Self {
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant collection that belongs to this name.
    pub fn collection_name(&self) -> String {
        format!("{COLLECTION_PREFIX}{}", self.0)
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A stored time as clients see it: RFC 3339, or milliseconds since the
/// epoch for one RFC 3339 cannot write.
pub fn rfc3339(at: mongodb::bson::DateTime) -> String {
    at.try_to_rfc3339_string()
        .unwrap_or_else(|_| at.timestamp_millis().to_string())
}

fn describe_char(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// An admin's email address, normalised so that uniqueness does not depend on
/// how a client typed it: trimmed, Unicode NFC (a precomposed "é" and "e" plus
/// a combining accent are one address), lowercased, and the domain in its
/// IDNA ASCII form (`bücher.example` is stored as `xn--bcher-kva.example`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// RFC 5321 caps a forward path at 256 octets including the angle brackets.
pub const MAX_EMAIL_LEN: usize = 254;

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        use unicode_normalization::UnicodeNormalization;
        let field = "email";
        // NFC again after lowercasing, which can undo it: parsing a parsed
        // email must give it back unchanged.
        let email: String = raw
            .trim()
            .nfc()
            .collect::<String>()
            .to_lowercase()
            .nfc()
            .collect();
        if email.is_empty() {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        if email.len() > MAX_EMAIL_LEN {
            return Err(ApiError::invalid(
                field,
                format!("must be at most {MAX_EMAIL_LEN} bytes"),
            ));
        }
        if email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ','))
        {
            return Err(ApiError::invalid(
                field,
                "must not contain spaces, control characters, quotes, commas or angle brackets",
            ));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(ApiError::invalid(field, "must contain '@'"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(ApiError::invalid(
                field,
                "the part before '@' must be 1 to 64 characters",
            ));
        }
        let bad_domain =
            || ApiError::invalid(field, "must have a domain such as example.com after '@'");
        let domain = idna::domain_to_ascii(domain).map_err(|_| bad_domain())?;
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !domain.contains('.') || !labels_ok {
            return Err(bad_domain());
        }
        let email = format!("{local}@{domain}");
        if email.len() > MAX_EMAIL_LEN {
            return Err(ApiError::invalid(
                field,
                format!("must be at most {MAX_EMAIL_LEN} bytes"),
            ));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Email {
    /// Rebuilds an email read back from the database, where it was stored
    /// after [`Email::parse`]; no validation is repeated.
    pub(crate) fn from_stored(email: &str) -> Self {
        Self(email.to_owned())
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A plaintext password on its way to bcrypt. `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

pub const MIN_PASSWORD_BYTES: usize = 8;
/// bcrypt reads at most 72 bytes; longer passwords are refused rather than
/// silently truncated (two passwords sharing 72 bytes would both verify).
pub const MAX_PASSWORD_BYTES: usize = 72;

impl Password {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let field = "password";
        if raw.len() < MIN_PASSWORD_BYTES {
            return Err(ApiError::invalid(
                field,
                format!("must be at least {MIN_PASSWORD_BYTES} bytes"),
            ));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::invalid(
                field,
                format!("must be at most {MAX_PASSWORD_BYTES} bytes (bcrypt reads no more)"),
            ));
        }
        if raw.contains('\0') {
            return Err(ApiError::invalid(field, "must not contain NUL"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password chosen now (create, a password change, provisioning in
    /// plaintext): the rules of [`Password::parse`], then zxcvbn's estimate of
    /// how guessable it is, against `min_score` (0-4), with what the client
    /// already said about itself (`context`: email, organization name)
    /// counted as known to an attacker. The 422 says why and what would help.
    pub fn parse_new(raw: &str, min_score: u8, context: &[&str]) -> Result<Self, ApiError> {
        let password = Self::parse(raw)?;
        password.check_strength(min_score, context)?;
        Ok(password)
    }

    /// The strength half of [`Password::parse_new`], for a caller that has
    /// work to start before it (the first estimate of a process builds
    /// zxcvbn's dictionaries, tens of milliseconds of CPU).
    pub fn check_strength(&self, min_score: u8, context: &[&str]) -> Result<(), ApiError> {
        if min_score == 0 {
            return Ok(());
        }
        let estimate = zxcvbn::zxcvbn(&self.0, context);
        let score = u8::from(estimate.score());
        if score >= min_score {
            return Ok(());
        }
        let mut message =
            format!("is too easy to guess (strength {score} of 4; at least {min_score} needed)");
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                message.push_str(&format!(": {warning}"));
            }
            for suggestion in feedback.suggestions() {
                message.push_str(&format!(" {suggestion}"));
            }
        }
        Err(ApiError::invalid("password", message))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "master_org_db";

    fn name_err(raw: &str) -> String {
        match OrgName::parse(raw, DB) {
            Ok(n) => panic!("{raw:?} was accepted as {n}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_name_is_trimmed_and_lowercased() {
        let name = OrgName::parse("  Acme-Corp_2 ", DB).unwrap();
        assert_eq!(name.as_str(), "acme-corp_2");
        assert_eq!(name.collection_name(), "org_acme-corp_2");
    }

    #[test]
    fn an_empty_name_is_refused() {
        assert!(name_err("   ").contains("empty"));
    }

    #[test]
    fn names_with_namespace_characters_are_refused() {
        for raw in [
            "a$b",
            "a.b",
            "a b",
            "a\0b",
            "system.users",
            "acme/x",
            "ümlaut",
            "a\u{200b}b",
        ] {
            assert!(name_err(raw).contains("may contain only"), "{raw:?}");
        }
    }

    #[test]
    fn a_name_must_start_with_a_letter_or_digit() {
        assert!(name_err("-acme").contains("start with"));
        assert!(name_err("_acme").contains("start with"));
    }

    #[test]
    fn reserved_prefixes_are_refused() {
        for raw in ["system", "systemx", "admin1", "config", "local-db", "org_x"] {
            assert!(name_err(raw).contains("reserved"), "{raw:?}");
        }
    }

    #[test]
    fn the_length_bound_follows_the_database_name() {
        assert_eq!(OrgName::max_len_for(DB), MAX_ORG_NAME_LEN);
        let long_db = "d".repeat(240);
        assert_eq!(OrgName::max_len_for(&long_db), 255 - 240 - 1 - 4);
        assert!(OrgName::parse(&"a".repeat(64), DB).is_ok());
        assert!(name_err(&"a".repeat(65)).contains("at most 64"));
        assert!(OrgName::parse("abcdefghijk", &long_db).is_err());
    }

    #[test]
    fn an_email_is_normalised() {
        let email = Email::parse("  Admin@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "admin@example.com");
    }

    #[test]
    fn an_email_is_one_address_however_its_unicode_was_composed() {
        let precomposed = Email::parse("Ren\u{e9}@Caf\u{e9}.example").unwrap();
        let decomposed = Email::parse("Rene\u{301}@Cafe\u{301}.example").unwrap();
        assert_eq!(precomposed, decomposed);
        assert_eq!(precomposed.as_str(), "ren\u{e9}@xn--caf-dma.example");
    }

    #[test]
    fn an_international_domain_is_stored_in_its_ascii_form() {
        let unicode = Email::parse("admin@B\u{fc}cher.example").unwrap();
        let ascii = Email::parse("admin@xn--bcher-kva.example").unwrap();
        assert_eq!(unicode, ascii);
        assert_eq!(ascii.as_str(), "admin@xn--bcher-kva.example");
        assert!(Email::parse("admin@xn--invalid-punycode-\u{fc}.example").is_err());
    }

    #[test]
    fn a_new_password_must_be_hard_to_guess_and_the_refusal_says_why() {
        let weak = Password::parse_new("password123", 3, &[]).unwrap_err();
        assert_eq!(weak.status(), 422);
        let text = weak.to_string();
        assert!(text.contains("too easy to guess"), "{text}");
        assert!(text.contains("common password"), "{text}");
        assert!(!text.contains("password123"), "{text}");
        // What the client said about itself counts as known to an attacker.
        assert!(Password::parse_new("acme-widgets-2024", 3, &[]).is_ok());
        assert!(Password::parse_new(
            "acme-widgets-2024",
            3,
            &["acme-widgets", "ops@acme.example"]
        )
        .is_err());
        assert!(Password::parse_new("blue-kettle-orbit-42", 3, &[]).is_ok());
        // Score 0 turns the estimate off; the byte rules stay.
        assert!(Password::parse_new("password123", 0, &[]).is_ok());
        assert!(Password::parse_new("short", 0, &[]).is_err());
    }

    #[test]
    fn malformed_emails_are_refused() {
        for raw in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@example",
            "a@.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a@x..com",
            "a\0@x.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?}");
        }
        assert!(Email::parse(&format!("{}@x.com", "a".repeat(65))).is_err());
        assert!(Email::parse(&format!("a@{}.com", "b".repeat(250))).is_err());
    }

    #[test]
    fn passwords_are_bounded_by_what_bcrypt_reads() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(72)).is_ok());
        assert!(Password::parse(&"x".repeat(73)).is_err());
        // 24 three-byte characters are 72 bytes; one more is over.
        assert!(Password::parse(&"€".repeat(24)).is_ok());
        assert!(Password::parse(&"€".repeat(25)).is_err());
        assert!(Password::parse("with\0nul!").is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// MongoDB's rules for a collection name inside database `db`.
        fn is_valid_collection(db: &str, collection: &str) -> bool {
            !collection.is_empty()
                && !collection.contains('$')
                && !collection.contains('\0')
                && !collection.starts_with("system.")
                && db.len() + 1 + collection.len() <= MAX_NAMESPACE_BYTES
        }

        fn db_names() -> impl Strategy<Value = String> {
            "[a-z_][a-z0-9_]{0,62}"
        }

        proptest! {
            #[test]
            fn every_accepted_name_is_a_valid_collection_within_the_namespace_limit(
                raw in any::<String>(),
                db in db_names(),
            ) {
                if let Ok(name) = OrgName::parse(&raw, &db) {
                    prop_assert!(is_valid_collection(&db, &name.collection_name()), "{name:?} in {db}");
                    prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'));
                }
            }

            #[test]
            fn names_shaped_like_the_rules_are_accepted_and_parse_to_themselves(
                raw in "[ ]{0,2}[A-Za-z0-9][A-Za-z0-9_-]{0,80}[ ]{0,2}",
                db in db_names(),
            ) {
                match OrgName::parse(&raw, &db) {
                    Ok(name) => {
                        prop_assert!(is_valid_collection(&db, &name.collection_name()));
                        let again = OrgName::parse(name.as_str(), &db).unwrap();
                        prop_assert_eq!(again, name);
                    }
                    Err(_) => {
                        let n = raw.trim().to_ascii_lowercase();
                        prop_assert!(n.len() > OrgName::max_len_for(&db) || RESERVED_PREFIXES.iter().any(|p| n.starts_with(p)), "{raw:?} refused");
                    }
                }
            }

            #[test]
            fn every_accepted_email_is_normalised_and_has_one_at_sign(raw in any::<String>()) {
                if let Ok(email) = Email::parse(&raw) {
                    let s = email.as_str();
                    prop_assert_eq!(s.matches('@').count(), 1);
                    prop_assert!(s.len() <= MAX_EMAIL_LEN);
                    prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
                    prop_assert_eq!(Email::parse(s).unwrap(), email.clone());
                }
            }

            #[test]
            fn emails_shaped_like_addresses_are_accepted(
                local in "[a-zA-Z0-9._+-]{1,64}",
                domain in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){1,3}",
            ) {
                let raw = format!("{local}@{domain}");
                let email = Email::parse(&raw).unwrap();
                prop_assert_eq!(email.as_str(), raw.to_lowercase());
            }

            #[test]
            fn a_password_is_accepted_exactly_when_bcrypt_reads_all_of_it(raw in any::<String>()) {
                let ok = Password::parse(&raw).is_ok();
                let expected = (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&raw.len()) && !raw.contains('\0');
                prop_assert_eq!(ok, expected);
            }
        }
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
