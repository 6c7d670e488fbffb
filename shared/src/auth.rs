//! Passwords, signing keys and tokens.
//!
//! - Passwords: bcrypt, run on the blocking pool so a hash never stalls the
//!   async executor; an unknown email still costs one verify.
//! - Keys: [`KeyProvider`] holds the HMAC signing key, from Secrets Manager
//!   (current and previous version, cached with a TTL) or, for local runs, from
//!   the environment.
//! - Tokens: [`Tokens`] issues and verifies HS256 JWTs per RFC 8725: one pinned
//!   algorithm, `typ` checked, `iss`/`aud`/`exp`/`iat`/`sub` required, `kid`
//!   used only to pick among the known key versions, `jku`/`x5u`/`jwk` ignored.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::config::{Secret, SecretSource, TokenConfig, MAX_BCRYPT_COST, MIN_JWT_SECRET_BYTES};
use crate::domain::Password;
use crate::error::ApiError;
use crate::secrets::{SecretStore, SecretVersion};

// ---------------------------------------------------------------- passwords

/// Hashes `password` at `cost` on the blocking pool.
pub async fn hash_password(password: &Password, cost: u32) -> Result<String, ApiError> {
    start_hash(password, cost).finish().await
}

/// Starts hashing `password` at `cost` on the blocking pool now, for a caller
/// with round trips to make before it needs the hash. Dropped unfinished, the
/// hash still runs to its end in the background and is discarded.
pub fn start_hash(password: &Password, cost: u32) -> PendingHash {
    let plain = password.expose().to_owned();
    PendingHash(tokio::task::spawn_blocking(move || {
        bcrypt::hash(plain, cost)
    }))
}

/// A hash [`start_hash`] started.
pub struct PendingHash(tokio::task::JoinHandle<Result<String, bcrypt::BcryptError>>);

impl PendingHash {
    pub async fn finish(self) -> Result<String, ApiError> {
        self.0
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }
}

/// Verifies `password` against `hash`; with no hash (unknown email) it verifies
/// against a dummy of the same cost, so both cases take the same time. A
/// stored hash above [`MAX_BCRYPT_COST`] is never run (one verify at cost 18
/// outlasts the function's timeout): it fails like a wrong password, at the
/// same price, and is logged.
pub async fn verify_password(
    password: &Password,
    hash: Option<&str>,
    cost: u32,
) -> Result<bool, ApiError> {
    let plain = password.expose().to_owned();
    let (hash, real) = match hash {
        Some(h) if bcrypt_cost(h).is_some_and(|c| c > MAX_BCRYPT_COST) => {
            tracing::error!(
                cost = bcrypt_cost(h),
                max = MAX_BCRYPT_COST,
                "stored password hash is too costly to verify; refusing the login"
            );
            (dummy_hash(cost), false)
        }
        Some(h) => (h.to_owned(), true),
        None => (dummy_hash(cost), false),
    };
    let matched = tokio::task::spawn_blocking(move || bcrypt::verify(plain, &hash))
        .await
        .map_err(ApiError::internal)?
        // A stored hash that does not parse is a server-side fault, never the
        // client's; it must not look like a wrong password either.
        .map_err(ApiError::internal)?;
    Ok(real && matched)
}

/// The cost a bcrypt hash was made with, if it reads as one.
pub fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))?;
    match rest.as_bytes() {
        [a, b, b'$', ..] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

/// Whether a hash that just verified should be replaced by one at `cost`: old
/// and provisioned hashes converge on the service's cost, so that a login
/// takes the same time whichever account it is for.
pub fn needs_rehash(hash: &str, cost: u32) -> bool {
    bcrypt_cost(hash) != Some(cost)
}

/// Checks a bcrypt hash computed upstream (provisioning without plaintext):
/// `$2a$`, `$2b$` or `$2y$`, a cost from the service's own (`min_cost`) to
/// [`MAX_BCRYPT_COST`], 53 characters of bcrypt's base64. A weaker hash is
/// refused, and so is a costlier one: one login against it would outlast the
/// function's timeout.
pub fn parse_bcrypt_hash(raw: &str, min_cost: u32) -> Result<String, ApiError> {
    let field = "password_hash";
    let bad = || {
        ApiError::invalid(
            field,
            "must be a bcrypt hash ($2b$<cost>$ and 53 characters)",
        )
    };
    let rest = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| raw.strip_prefix(p))
        .ok_or_else(bad)?;
    let (cost, tail) = rest.split_once('$').ok_or_else(bad)?;
    let cost: u32 = match cost.as_bytes() {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => cost.parse().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    let alphabet_ok = tail.len() == 53
        && tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    if !alphabet_ok || cost > 31 {
        return Err(bad());
    }
    if cost < min_cost {
        return Err(ApiError::invalid(
            field,
            format!("cost {cost} is below this service's {min_cost}"),
        ));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(ApiError::invalid(
            field,
            format!("cost {cost} is above this service's maximum of {MAX_BCRYPT_COST}"),
        ));
    }
    Ok(raw.to_owned())
}

/// A syntactically valid bcrypt hash at `cost` that no password matches in
/// practice; built, not computed, so it costs nothing at start-up.
fn dummy_hash(cost: u32) -> String {
    format!("$2b${cost:02}$C6UzMDM.H6dfI/f/IKxGhuTqbUJkUBvDJNvLeSDYGOHTsGaKpwKsC")
}

// ------------------------------------------------------------------- keys

/// One version of the signing key.
#[derive(Clone)]
pub struct SigningKey {
    pub version: String,
    secret: Secret,
}

impl SigningKey {
    pub fn new(version: impl Into<String>, secret: Secret) -> Self {
        Self {
            version: version.into(),
            secret,
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, [redacted])", self.version)
    }
}

/// The key versions that verify: the current one (which also signs) and the
/// previous one, so that a rotation logs nobody out.
#[derive(Clone, Debug)]
pub struct KeySet {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

impl KeySet {
    fn find(&self, kid: &str) -> Option<&SigningKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.version == kid)
    }
}

/// Version name of a key given directly in the environment.
pub const LOCAL_KEY_VERSION: &str = "local";

/// Minimum time between two refreshes caused by an unknown `kid`, so that a
/// stream of forged tokens cannot turn into a stream of Secrets Manager calls.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

struct Cached {
    keys: Arc<KeySet>,
    fetched: Instant,
}

enum KeySource {
    Static(Arc<KeySet>),
    Store { store: SecretStore, arn: String },
}

pub struct KeyProvider {
    source: KeySource,
    ttl: Duration,
    cache: RwLock<Option<Cached>>,
    /// When a refresh was last attempted; one refresh at a time.
    last_attempt: Mutex<Option<Instant>>,
}

impl KeyProvider {
    pub fn from_source(
        source: &SecretSource,
        store: Option<SecretStore>,
        ttl: Duration,
    ) -> Result<Self, ApiError> {
        let source = match source {
            SecretSource::Value(secret) => KeySource::Static(Arc::new(KeySet {
                current: SigningKey::new(LOCAL_KEY_VERSION, secret.clone()),
                previous: None,
            })),
            SecretSource::SecretsManager { arn } => KeySource::Store {
                store: store.ok_or_else(|| {
                    ApiError::internal("a secret ARN is configured but no secret store was built")
                })?,
                arn: arn.clone(),
            },
        };
        Ok(Self {
            source,
            ttl,
            cache: RwLock::new(None),
            last_attempt: Mutex::new(None),
        })
    }

    pub fn fixed(keys: KeySet) -> Self {
        Self {
            source: KeySource::Static(Arc::new(keys)),
            ttl: Duration::MAX,
            cache: RwLock::new(None),
            last_attempt: Mutex::new(None),
        }
    }

    /// The keys to sign and verify with. Refreshes past the TTL; while the
    /// secret store is unreachable the cached keys keep working; with no keys
    /// at all the answer is a 503.
    pub async fn keys(&self) -> Result<Arc<KeySet>, ApiError> {
        let (store, arn) = match &self.source {
            KeySource::Static(keys) => return Ok(keys.clone()),
            KeySource::Store { store, arn } => (store, arn),
        };
        if let Some(c) = self.cache.read().await.as_ref() {
            if c.fetched.elapsed() < self.ttl {
                return Ok(c.keys.clone());
            }
        }
        self.refresh(store, arn, None).await
    }

    /// The key version named `kid`, refreshing at most once per
    /// [`UNKNOWN_KID_REFRESH_INTERVAL`] when it is not known yet.
    pub async fn key_for(&self, kid: &str) -> Result<Option<SigningKey>, ApiError> {
        let keys = self.keys().await?;
        if let Some(k) = keys.find(kid) {
            return Ok(Some(k.clone()));
        }
        let KeySource::Store { store, arn } = &self.source else {
            return Ok(None);
        };
        let keys = self
            .refresh(store, arn, Some(UNKNOWN_KID_REFRESH_INTERVAL))
            .await?;
        Ok(keys.find(kid).cloned())
    }

    async fn refresh(
        &self,
        store: &SecretStore,
        arn: &str,
        min_interval: Option<Duration>,
    ) -> Result<Arc<KeySet>, ApiError> {
        let mut last = self.last_attempt.lock().await;
        // Someone else may have refreshed while we waited for the lock.
        if let Some(c) = self.cache.read().await.as_ref() {
            let recent = last.is_some_and(|t| t.elapsed() < min_interval.unwrap_or(Duration::ZERO));
            if c.fetched.elapsed() < self.ttl && (min_interval.is_none() || recent) {
                return Ok(c.keys.clone());
            }
        }
        *last = Some(Instant::now());
        let fetched = store
            .current_and_previous(arn)
            .await
            .map_err(KeyError::from)
            .and_then(|(current, previous)| key_set(arn, current, previous));
        match fetched {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.cache.write().await = Some(Cached {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                });
                Ok(keys)
            }
            Err(e) => match self.cache.read().await.as_ref() {
                Some(c) => {
                    tracing::warn!(error = %crate::error::cause_chain(&*e), "signing key refresh failed; using the cached key");
                    Ok(c.keys.clone())
                }
                None => Err(ApiError::unavailable("signing key", e)),
            },
        }
    }
}

type KeyError = Box<dyn std::error::Error + Send + Sync>;

/// The keys of a fetched secret, each held to the length a key given in
/// the environment must have ([`MIN_JWT_SECRET_BYTES`]): a short current
/// key is refused (the cached keys, if any, stay in use), a short previous
/// one is dropped, so tokens it signed stop verifying.
fn key_set(
    arn: &str,
    current: SecretVersion,
    previous: Option<SecretVersion>,
) -> Result<KeySet, KeyError> {
    let long_enough = |k: &SecretVersion| k.value.expose().len() >= MIN_JWT_SECRET_BYTES;
    if !long_enough(&current) {
        return Err(format!(
            "{arn}: the current signing key (version {}) is shorter than {MIN_JWT_SECRET_BYTES} bytes",
            current.version
        )
        .into());
    }
    let previous = previous.filter(|p| {
        let ok = long_enough(p);
        if !ok {
            tracing::error!(
                version = %p.version,
                "previous signing key shorter than {MIN_JWT_SECRET_BYTES} bytes; tokens signed with it are refused"
            );
        }
        ok
    });
    Ok(KeySet {
        current: SigningKey::new(current.version, current.value),
        previous: previous.map(|p| SigningKey::new(p.version, p.value)),
    })
}

// ----------------------------------------------------------------- tokens

/// What a token says. `org` is the organization's immutable id, so a rename
/// does not invalidate sessions; `ver` is the admin's token version when it
/// was issued, so a change of email or password does (the admin document's
/// `token_version` moves on, and every older token stops matching).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub org: String,
    /// Tokens from before versions existed carry none: version 0, which is
    /// also where every admin starts.
    #[serde(default)]
    pub ver: i64,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

impl Claims {
    /// Whether the token was issued less than `max_age` ago.
    pub fn issued_within(&self, max_age: Duration) -> bool {
        let now = jsonwebtoken::get_current_timestamp();
        now.saturating_sub(self.iat) < max_age.as_secs()
    }
}

pub const TOKEN_TYPE: &str = "JWT";
pub const ALGORITHM: Algorithm = Algorithm::HS256;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

pub struct Tokens {
    keys: KeyProvider,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// One message for every way a token can be wrong: a client learns nothing
/// from which check failed.
const BAD_TOKEN: ApiError = ApiError::Unauthorized("invalid or expired token");

impl Tokens {
    pub fn new(keys: KeyProvider, cfg: &TokenConfig) -> Self {
        Self {
            keys,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            ttl: cfg.ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn key_provider(&self) -> &KeyProvider {
        &self.keys
    }

    /// A token for admin `admin_id` of organization `org_id`, at the admin's
    /// current token `version`.
    pub async fn issue(
        &self,
        admin_id: &str,
        org_id: &str,
        version: i64,
    ) -> Result<String, ApiError> {
        let keys = self.keys.keys().await?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: admin_id.to_owned(),
            org: org_id.to_owned(),
            ver: version,
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
        };
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(keys.current.version.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(keys.current.secret.expose().as_bytes())
                .map_err(ApiError::internal)?,
        )
        .map_err(ApiError::internal)
    }

    /// Verifies a token and returns its claims, or a 401.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| BAD_TOKEN)?;
        if header.alg != ALGORITHM || header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(BAD_TOKEN);
        }
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.key_for(kid).await?.ok_or(BAD_TOKEN)?,
            None => return Err(BAD_TOKEN),
        };
        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.required_spec_claims = ["exp", "iss", "aud", "sub", "iat", "nbf"]
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>();
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(key.secret.expose().as_bytes()).map_err(|_| BAD_TOKEN)?,
            &validation,
        )
        .map_err(|_| BAD_TOKEN)?;
        let claims = data.claims;
        let now = jsonwebtoken::get_current_timestamp();
        if claims.iat > now + LEEWAY_SECS {
            return Err(BAD_TOKEN);
        }
        Ok(claims)
    }

    /// Reads `Authorization: Bearer <token>` and verifies it.
    pub async fn verify_bearer(&self, authorization: Option<&str>) -> Result<Claims, ApiError> {
        let value = authorization.ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        self.verify(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TokenConfig {
        TokenConfig {
            key: SecretSource::Value(Secret::new("k")),
            issuer: "iss".into(),
            audience: "aud".into(),
            ttl: Duration::from_secs(60),
            key_cache_ttl: Duration::from_secs(60),
        }
    }

    fn key(version: &str, secret: &str) -> SigningKey {
        SigningKey::new(version, Secret::new(secret))
    }

    fn tokens(current: SigningKey, previous: Option<SigningKey>) -> Tokens {
        Tokens::new(KeyProvider::fixed(KeySet { current, previous }), &cfg())
    }

    #[tokio::test]
    async fn an_issued_token_verifies_and_names_the_org() {
        let t = tokens(key("v1", "s1"), None);
        let token = t.issue("admin", "org", 0).await.unwrap();
        let c = t.verify(&token).await.unwrap();
        assert_eq!((c.sub.as_str(), c.org.as_str()), ("admin", "org"));
    }

    #[tokio::test]
    async fn the_previous_key_still_verifies_after_a_rotation() {
        let before = tokens(key("v1", "s1"), None);
        let token = before.issue("a", "o", 0).await.unwrap();
        let after = tokens(key("v2", "s2"), Some(key("v1", "s1")));
        assert!(after.verify(&token).await.is_ok());
        let fresh = after.issue("a", "o", 0).await.unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
            Some("v2")
        );
        let gone = tokens(key("v3", "s3"), Some(key("v2", "s2")));
        assert!(gone.verify(&token).await.is_err());
    }

    #[test]
    fn upstream_hashes_must_be_bcrypt_at_the_services_cost_or_more() {
        let good = "$2b$12$C6UzMDM.H6dfI/f/IKxGhuTqbUJkUBvDJNvLeSDYGOHTsGaKpwKsC";
        assert!(parse_bcrypt_hash(good, 12).is_ok());
        assert!(parse_bcrypt_hash(&good.replace("$12$", "$13$"), 12).is_ok());
        assert!(parse_bcrypt_hash(&good.replace("$12$", "$10$"), 12).is_err());
        assert!(parse_bcrypt_hash(&good.replace("$12$", "$14$"), 12).is_ok());
        for too_costly in ["$15$", "$18$", "$31$"] {
            let err = parse_bcrypt_hash(&good.replace("$12$", too_costly), 12).unwrap_err();
            assert!(err.to_string().contains("maximum"), "{err}");
        }
        for bad in [
            "",
            "plain",
            "$2b$12$short",
            "$1$12$C6UzMDM.H6dfI/f/IKxGhuTqbUJkUBvDJNvLeSDYGOHTsGaKpwKsC",
            &good.replace('C', "!"),
        ] {
            assert!(parse_bcrypt_hash(bad, 4).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_hash_tells_its_cost_and_whether_it_needs_rehashing() {
        let h = "$2b$05$C6UzMDM.H6dfI/f/IKxGhuTqbUJkUBvDJNvLeSDYGOHTsGaKpwKsC";
        assert_eq!(bcrypt_cost(h), Some(5));
        assert_eq!(bcrypt_cost("$2b$x5$..."), None);
        assert_eq!(bcrypt_cost("plain"), None);
        assert!(needs_rehash(h, 4));
        assert!(!needs_rehash(h, 5));
    }

    #[tokio::test]
    async fn a_stored_hash_above_the_maximum_cost_fails_promptly_like_a_wrong_password() {
        let p = Password::parse("password123").unwrap();
        let at_31 = "$2b$31$C6UzMDM.H6dfI/f/IKxGhuTqbUJkUBvDJNvLeSDYGOHTsGaKpwKsC";
        let started = Instant::now();
        assert!(!verify_password(&p, Some(at_31), 4).await.unwrap());
        // Cost 31 would take days; the dummy at cost 4 takes milliseconds.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn an_unknown_email_costs_one_verify_and_never_matches() {
        let p = Password::parse("password123").unwrap();
        assert!(!verify_password(&p, None, 4).await.unwrap());
        let h = hash_password(&p, 4).await.unwrap();
        assert!(verify_password(&p, Some(&h), 4).await.unwrap());
        assert!(!h.contains("password123"));
    }
}
