//! People sign in through the organisation's OpenID Connect provider; API keys stay for services.
//!
//! A person's request carries the provider's ID token (a JWT) as its bearer token. Verdict checks it
//! against the configured issuer: the signature with a key from the issuer's JWKS (found through its
//! discovery document, cached, fetched again when a token names a key id not seen yet, so the provider can
//! rotate keys), the issuer, the audience (Verdict's client id), the expiry and not-before times with a small
//! leeway, and the algorithm against a configured list of asymmetric ones (never `none` or a shared secret).
//! The role comes from a configured claim through a value-to-role map; the person is then recorded in the
//! `users` table (see verdict-store's users.rs) and acts under their handle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::auth::Role;
use crate::error::ApiError;

/// The algorithms an ID token may be signed with: asymmetric only, so that nobody holding the client's
/// secret (or nothing, `none`) can mint a token.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `[oidc]`: the organisation's OpenID Connect provider. Without `issuer` and `audience`, only API keys
/// authenticate.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL exactly as the provider's tokens carry it in `iss`, e.g.
    /// `https://login.example.com/realms/care`; its discovery document is at
    /// `ISSUER/.well-known/openid-configuration`. `VERDICT_OIDC_ISSUER`.
    pub issuer: Option<String>,
    /// Verdict's client id at the provider: tokens must name it in `aud`. `VERDICT_OIDC_AUDIENCE`.
    pub audience: Option<String>,
    /// The claim holding the person's roles or groups (a string or a list of strings); a dotted path reads
    /// a nested claim (`realm_access.roles`). Default `roles`.
    pub role_claim: String,
    /// Values of the role claim and the Verdict role each gives (`viewer`, `analyst`, `lead`, `admin`); a
    /// person with several gets the highest. A person with none is refused.
    pub roles: BTreeMap<String, String>,
    /// The claim giving the person's handle in Verdict (events, assignments). Default
    /// `preferred_username`; without it in a token, the subject is the handle.
    pub username_claim: String,
    /// Algorithms accepted (default `RS256`); asymmetric ones only.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 60, at most 300).
    pub leeway_secs: u64,
    /// An unknown key id makes Verdict fetch the JWKS again at most this often, in seconds (default 60), so
    /// a stream of forged key ids cannot make it hammer the provider.
    pub jwks_refresh_min_secs: u64,
    /// Known keys are fetched again after this many seconds (default 3600), so a key the provider withdrew
    /// stops being accepted.
    pub jwks_max_age_secs: u64,
    /// Time allowed to each request to the provider, in seconds (default 10).
    pub timeout_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            role_claim: "roles".to_owned(),
            roles: BTreeMap::new(),
            username_claim: "preferred_username".to_owned(),
            algorithms: vec!["RS256".to_owned()],
            leeway_secs: 60,
            jwks_refresh_min_secs: 60,
            jwks_max_age_secs: 3600,
            timeout_secs: 10,
        }
    }
}

/// A configuration that cannot work, said in the configuration's words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("[oidc] {0}")]
pub struct OidcConfigError(String);

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the bearer token is not a well-formed ID token: {0}")]
    Malformed(String),
    #[error("the ID token was refused: {0}")]
    Rejected(String),
    #[error("the ID token is signed with key {0:?}, which the provider does not publish")]
    UnknownKey(String),
    #[error("the identity provider cannot be reached to check the token: {0}")]
    ProviderUnavailable(String),
    #[error("the ID token gives no Verdict role: claim {claim:?} has none of the mapped values ({found})")]
    NoRole { claim: String, found: String },
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::NoRole { .. } => ApiError::Forbidden(err.to_string()),
            TokenError::ProviderUnavailable(_) => ApiError::Unavailable(err.to_string()),
            TokenError::Malformed(_) | TokenError::Rejected(_) | TokenError::UnknownKey(_) => {
                ApiError::Unauthenticated(err.to_string())
            }
        }
    }
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPerson {
    pub issuer: String,
    pub subject: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Role,
}

impl OidcConfig {
    /// Whether people sign in at all (issuer and audience given).
    pub fn enabled(&self) -> bool {
        self.issuer.is_some() || self.audience.is_some()
    }

    /// Refuses what cannot work: half a configuration, an issuer that is not a URL (or plain http to another
    /// machine), an unknown or symmetric algorithm, a role map naming no Verdict role.
    pub fn check(&self) -> Result<(), OidcConfigError> {
        let refuse = |m: String| Err(OidcConfigError(m));
        if !self.enabled() {
            return Ok(());
        }
        let (Some(issuer), Some(audience)) = (&self.issuer, &self.audience) else {
            return refuse("issuer and audience (the client id) go together: give both or neither".into());
        };
        let issuer = issuer.trim();
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                issuer
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            });
        if !(issuer.starts_with("https://") || loopback) {
            return refuse(format!(
                "issuer {issuer:?} must be an https:// URL (plain http only on this machine, for tests)"
            ));
        }
        if audience.trim().is_empty() {
            return refuse("audience (the client id) is empty".into());
        }
        if self.role_claim.trim().is_empty() || self.username_claim.trim().is_empty() {
            return refuse("role_claim and username_claim name claims; they cannot be empty".into());
        }
        if self.roles.is_empty() {
            return refuse(format!(
                "roles maps values of the {:?} claim to Verdict roles, e.g. roles = {{ \"disputes-lead\" = \"lead\" }}; \
                 without it nobody could sign in",
                self.role_claim
            ));
        }
        for (value, role) in &self.roles {
            if role.parse::<Role>().is_err() {
                return refuse(format!(
                    "roles.{value:?} = {role:?} is no Verdict role (viewer, analyst, lead, admin)"
                ));
            }
        }
        self.algorithms().map_err(OidcConfigError)?;
        if self.leeway_secs > 300 {
            return refuse(format!("leeway_secs is at most 300, not {}", self.leeway_secs));
        }
        if self.timeout_secs == 0 {
            return refuse("timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    fn algorithms(&self) -> Result<Vec<Algorithm>, String> {
        if self.algorithms.is_empty() {
            return Err("algorithms is empty: name at least one, e.g. [\"RS256\"]".into());
        }
        self.algorithms
            .iter()
            .map(|name| {
                name.trim()
                    .parse::<Algorithm>()
                    .ok()
                    .filter(|alg| ASYMMETRIC.contains(alg))
                    .ok_or_else(|| {
                        format!(
                            "algorithm {name:?} is not accepted: use asymmetric ones (RS256, RS384, RS512, PS256, \
                             PS384, PS512, ES256, ES384, EdDSA)"
                        )
                    })
            })
            .collect()
    }

    /// The role a token's claims give: the highest Verdict role any value of the role claim maps to.
    pub fn role_of(&self, claims: &serde_json::Map<String, Value>) -> Result<Role, TokenError> {
        let claim = claim_at(claims, &self.role_claim);
        let values: Vec<&str> = match claim {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        values
            .iter()
            .filter_map(|v| self.roles.get(*v))
            .filter_map(|role| role.parse::<Role>().ok())
            .max()
            .ok_or_else(|| TokenError::NoRole {
                claim: self.role_claim.clone(),
                found: if values.is_empty() {
                    "no value".to_owned()
                } else {
                    values.join(", ")
                },
            })
    }

    /// The person a token's verified claims name.
    pub fn person_of(&self, claims: &serde_json::Map<String, Value>) -> Result<VerifiedPerson, TokenError> {
        let text = |name: &str| {
            claim_at(claims, name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let subject = text("sub").ok_or_else(|| TokenError::Rejected("it has no subject (sub)".into()))?;
        let issuer = text("iss").ok_or_else(|| TokenError::Rejected("it has no issuer (iss)".into()))?;
        let username = text(&self.username_claim).unwrap_or_else(|| subject.clone());
        if username.len() > 100 || username.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(TokenError::Rejected(format!(
                "its {:?} ({username:?}) is not a usable handle: 1 to 100 characters without spaces",
                self.username_claim
            )));
        }
        Ok(VerifiedPerson {
            issuer,
            subject,
            username,
            name: text("name"),
            email: text("email"),
            role: self.role_of(claims)?,
        })
    }
}

/// A claim by dotted path (`realm_access.roles`), or by its plain name when that exists as is.
fn claim_at<'a>(claims: &'a serde_json::Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    fetched_at: Option<Instant>,
}

/// Verifies ID tokens of the configured provider; cheap to clone (the key cache is shared).
#[derive(Clone)]
pub struct OidcVerifier {
    config: Arc<OidcConfig>,
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    keys: Arc<RwLock<KeyCache>>,
    /// One fetch at a time: requests that miss together wait for the same fetch.
    fetching: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// The verifier of `config`, or `None` when people do not sign in (no `[oidc]`).
    pub fn from_config(config: &OidcConfig) -> Result<Option<Self>, OidcConfigError> {
        config.check()?;
        let (Some(issuer), Some(audience)) = (&config.issuer, &config.audience) else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs))
            .build()
            .map_err(|err| OidcConfigError(format!("cannot build the HTTP client: {err}")))?;
        Ok(Some(Self {
            issuer: issuer.trim().to_owned(),
            audience: audience.trim().to_owned(),
            algorithms: config.algorithms().map_err(OidcConfigError)?,
            config: Arc::new(config.clone()),
            http,
            keys: Arc::default(),
            fetching: Arc::default(),
        }))
    }

    /// Whether `token` looks like a JWT (three dot-separated parts) rather than an API key.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && !token.starts_with("vdk_")
    }

    /// Checks `token` and says whom it names, with their role.
    pub async fn verify(&self, token: &str) -> Result<VerifiedPerson, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|err| TokenError::Malformed(err.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Rejected(format!(
                "it is signed with {:?}, which is not among the accepted algorithms",
                header.alg
            )));
        }
        let (key, key_alg) = self.key_for(header.kid.as_deref()).await?;
        if key_alg.is_some_and(|alg| alg != header.alg) {
            return Err(TokenError::Rejected(format!(
                "its algorithm {:?} is not the one its key is published for",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|err| TokenError::Rejected(rejection(&err)))?;
        self.config.person_of(&data.claims)
    }

    /// The key named `kid` (or the only key, for a token without one), fetching the JWKS when it is not
    /// known yet, at most once per `jwks_refresh_min_secs`, and whenever the cached set is older than
    /// `jwks_max_age_secs`.
    async fn key_for(&self, kid: Option<&str>) -> Result<(DecodingKey, Option<Algorithm>), TokenError> {
        let max_age = Duration::from_secs(self.config.jwks_max_age_secs);
        let min_refresh = Duration::from_secs(self.config.jwks_refresh_min_secs);
        let (known, age) = {
            let cache = self.keys.read().await;
            (lookup(&cache, kid), cache.fetched_at.map(|at| at.elapsed()))
        };
        match (known, age) {
            (Some(key), Some(age)) if age < max_age => return Ok(key),
            (None, Some(age)) if age < min_refresh => return Err(unknown(kid)),
            _ => {}
        }
        let mut jwks_uri = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        {
            let cache = self.keys.read().await;
            let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < min_refresh);
            if fresh {
                return lookup(&cache, kid).ok_or_else(|| unknown(kid));
            }
        }
        let fetched = self.fetch_keys(&mut jwks_uri).await;
        let mut cache = self.keys.write().await;
        match fetched {
            Ok(keys) => {
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
            }
            // Keys already known keep working while the provider is down; an unknown one cannot be checked.
            Err(err) => {
                tracing::warn!(error = %err, issuer = %self.issuer, "fetching the identity provider's keys failed");
                return lookup(&cache, kid).ok_or(err);
            }
        }
        lookup(&cache, kid).ok_or_else(|| unknown(kid))
    }

    async fn fetch_keys(
        &self,
        jwks_uri: &mut Option<String>,
    ) -> Result<HashMap<String, (DecodingKey, Option<Algorithm>)>, TokenError> {
        let unavailable =
            |what: &str, err: &dyn std::fmt::Display| TokenError::ProviderUnavailable(format!("{what}: {err}"));
        let uri = match jwks_uri.clone() {
            Some(uri) => uri,
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
                let discovery: Discovery = self
                    .get_json(&url)
                    .await
                    .map_err(|err| unavailable("the discovery document", &err))?;
                if discovery.issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
                    return Err(TokenError::ProviderUnavailable(format!(
                        "the discovery document names issuer {:?}, not the configured {:?}",
                        discovery.issuer, self.issuer
                    )));
                }
                *jwks_uri = Some(discovery.jwks_uri.clone());
                discovery.jwks_uri
            }
        };
        let set: JwkSet = self.get_json(&uri).await.map_err(|err| unavailable("the JWKS", &err))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Keys for encryption, without an id, or of a kind this build cannot use are left out.
            let for_signing = !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            );
            let (Some(kid), true) = (jwk.common.key_id.clone(), for_signing) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|alg| alg.to_string().parse::<Algorithm>().ok());
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self.http.get(url).send().await.map_err(|err| err.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        response.json::<T>().await.map_err(|err| format!("{url}: {err}"))
    }
}

fn lookup(cache: &KeyCache, kid: Option<&str>) -> Option<(DecodingKey, Option<Algorithm>)> {
    match kid {
        Some(kid) => cache.keys.get(kid).cloned(),
        None if cache.keys.len() == 1 => cache.keys.values().next().cloned(),
        None => None,
    }
}

fn unknown(kid: Option<&str>) -> TokenError {
    match kid {
        Some(kid) => TokenError::UnknownKey(kid.to_owned()),
        None => TokenError::Malformed("it names no key (kid) and the provider publishes several".into()),
    }
}

/// What a refusal by jsonwebtoken means, in words for the caller.
fn rejection(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "it has expired".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "it was issued by another issuer".into(),
        ErrorKind::InvalidAudience => "it is meant for another client (aud)".into(),
        ErrorKind::InvalidSignature => "its signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "its algorithm does not match its key".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it lacks the {claim} claim"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: Some("https://login.example.com/realms/care".into()),
            audience: Some("verdict".into()),
            roles: [
                ("disputes-viewer", "viewer"),
                ("disputes-analyst", "analyst"),
                ("disputes-lead", "lead"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..OidcConfig::default()
        }
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }

    #[test]
    fn the_highest_mapped_role_wins_and_unmapped_values_are_ignored() {
        let config = config();
        let role = config.role_of(&claims(
            json!({"roles": ["staff", "disputes-analyst", "disputes-lead"]}),
        ));
        assert_eq!(role.ok(), Some(Role::Lead));
        let role = config.role_of(&claims(json!({"roles": "disputes-viewer"})));
        assert_eq!(role.ok(), Some(Role::Viewer));
        let refused = config.role_of(&claims(json!({"roles": ["staff"]})));
        assert!(matches!(refused, Err(TokenError::NoRole { ref found, .. }) if found == "staff"));
        assert!(matches!(
            config.role_of(&claims(json!({}))),
            Err(TokenError::NoRole { .. })
        ));
    }

    #[test]
    fn a_nested_role_claim_is_read_by_its_dotted_path() {
        let config = OidcConfig {
            role_claim: "realm_access.roles".into(),
            ..config()
        };
        let role = config.role_of(&claims(json!({"realm_access": {"roles": ["disputes-lead"]}})));
        assert_eq!(role.ok(), Some(Role::Lead));
    }

    #[test]
    fn the_handle_is_the_username_claim_or_else_the_subject() {
        let config = config();
        let base = json!({"sub": "0f3a", "iss": "https://login.example.com/realms/care", "roles": "disputes-analyst",
                          "name": "Jeanne Martin", "email": "jeanne@example.com"});
        let person = config.person_of(&claims(base.clone())).ok();
        assert_eq!(person.as_ref().map(|p| p.username.as_str()), Some("0f3a"));
        let mut named = base;
        named["preferred_username"] = json!("jeanne.martin");
        let person = config.person_of(&claims(named.clone())).ok();
        assert_eq!(person.as_ref().map(|p| p.username.as_str()), Some("jeanne.martin"));
        assert_eq!(person.and_then(|p| p.email).as_deref(), Some("jeanne@example.com"));
        named["preferred_username"] = json!("Jeanne Martin");
        assert!(matches!(config.person_of(&claims(named)), Err(TokenError::Rejected(_))));
    }

    #[test]
    fn a_configuration_that_cannot_work_is_refused_with_its_reason() {
        assert!(OidcConfig::default().check().is_ok());
        assert!(config().check().is_ok());
        let half = OidcConfig {
            audience: None,
            ..config()
        };
        assert!(half.check().is_err_and(|e| e.0.contains("go together")));
        let plain = OidcConfig {
            issuer: Some("http://login.example.com".into()),
            ..config()
        };
        assert!(plain.check().is_err_and(|e| e.0.contains("https")));
        let local = OidcConfig {
            issuer: Some("http://127.0.0.1:8900".into()),
            ..config()
        };
        assert!(local.check().is_ok());
        let symmetric = OidcConfig {
            algorithms: vec!["HS256".into()],
            ..config()
        };
        assert!(symmetric.check().is_err_and(|e| e.0.contains("HS256")));
        let mut bad_role = config();
        bad_role.roles.insert("x".into(), "boss".into());
        assert!(bad_role.check().is_err_and(|e| e.0.contains("boss")));
        let no_roles = OidcConfig {
            roles: BTreeMap::new(),
            ..config()
        };
        assert!(no_roles.check().is_err());
    }
}
