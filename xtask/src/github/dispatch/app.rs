//! GitHub App authentication, the alternative to a token (`[chain] app-id-env` and
//! `private-key-env`): the app signs a short-lived JWT with its private key, finds its
//! installation on the owner of a repo, and trades the JWT for an installation token that
//! the [`super::client::Client`] then uses like any token.
//!
//! The flow and its limits are GitHub's ("Authenticating as a GitHub App installation",
//! "Generating a JSON Web Token (JWT) for a GitHub App"): the JWT is RS256, with `iat` 60
//! seconds in the past (clock drift) and `exp` at most 10 minutes after `iat`, `iss` the
//! app's id (or client id); `GET /repos/{owner}/{repo}/installation` with the JWT gives the
//! installation id; `POST /app/installations/{id}/access_tokens` gives a token valid for an
//! hour. An installation belongs to one owner (organisation or user), so a chain spread
//! over several owners gets one token per owner ([`super::Clients`]).
//!
//! The JWT is signed with rustls' ring provider (already compiled for TLS), which reads
//! the PKCS#1 PEM GitHub hands out and PKCS#8 alike. The key, the JWT and the
//! installation token are never printed: [`AppCredentials`] and [`super::Token`] have
//! redacted `Debug` and no `Display`, and answers are cleaned of the JWT.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use serde::Deserialize;

use super::client::{Client, RetryPolicy};
use super::{DispatchError, Token};

/// Seconds `iat` is set in the past, for clock drift (GitHub's recommendation).
const IAT_SKEW_SECS: u64 = 60;
/// Seconds from `iat` to `exp`: 9 minutes, under GitHub's limit of 10.
const JWT_LIFETIME_SECS: u64 = 9 * 60;

/// An app's id and private key. `Debug` shows only the app id's variable.
#[derive(Clone)]
pub struct AppCredentials {
    /// The app id (digits) or client id (`Iv1.…`): the JWT's `iss`.
    app_id: String,
    key: Arc<dyn SigningKey>,
    /// The variables they came from (safe to print).
    pub id_var: String,
    /// See `id_var`.
    pub key_var: String,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppCredentials({} / {}: ***)", self.id_var, self.key_var)
    }
}

impl AppCredentials {
    /// Read the app id from `id_var` and the PEM private key from `key_var`. `Ok(None)`
    /// when either is unset or empty (then a token is used, if any).
    ///
    /// Errors: [`DispatchError::AppConfig`] when both are set but the id is not an app or
    /// client id, or the key is not an RSA private key in PEM.
    pub fn from_env(id_var: &str, key_var: &str) -> Result<Option<AppCredentials>, DispatchError> {
        let get = |v: &str| std::env::var(v).ok().filter(|s| !s.trim().is_empty());
        let (Some(id), Some(pem)) = (get(id_var), get(key_var)) else {
            return Ok(None);
        };
        AppCredentials::parse(&id, &pem, id_var, key_var).map(Some)
    }

    /// [`AppCredentials::from_env`] on given values. A key whose line breaks were written
    /// as `\n` (as some secret stores do) is accepted too.
    pub fn parse(
        app_id: &str,
        pem: &str,
        id_var: &str,
        key_var: &str,
    ) -> Result<AppCredentials, DispatchError> {
        let config = |reason: String| DispatchError::AppConfig { reason };
        let app_id = app_id.trim();
        if app_id.is_empty()
            || app_id.len() > 64
            || !app_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return Err(config(format!(
                "{id_var} does not hold a GitHub App id (digits) or client id (Iv1.…): set it to the id on the app's settings page"
            )));
        }
        let pem = if pem.contains("\\n") && !pem.contains('\n') {
            pem.replace("\\n", "\n")
        } else {
            pem.to_owned()
        };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            config(format!(
                "{key_var} does not hold a PEM private key: set it to the whole .pem file GitHub generated for the app (-----BEGIN RSA PRIVATE KEY----- …)"
            ))
        })?;
        let key = rustls::crypto::ring::sign::any_supported_type(&der)
            .ok()
            .filter(|k| k.choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256]).is_some())
            .ok_or_else(|| {
                config(format!(
                    "{key_var} holds a private key that cannot sign RS256 (GitHub Apps use 2048-bit RSA keys): generate a new private key on the app's settings page"
                ))
            })?;
        Ok(AppCredentials {
            app_id: app_id.to_owned(),
            key,
            id_var: id_var.to_owned(),
            key_var: key_var.to_owned(),
        })
    }

    /// The app's JWT at time `now` (Unix seconds): `iat = now - 60`, `exp = iat + 540`,
    /// `iss` the app id, signed RS256.
    ///
    /// Errors: [`DispatchError::AppConfig`] when the key refuses to sign.
    pub fn jwt(&self, now: u64) -> Result<Token, DispatchError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let iat = now.saturating_sub(IAT_SKEW_SECS);
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims =
            serde_json::json!({ "iat": iat, "exp": iat + JWT_LIFETIME_SECS, "iss": self.app_id });
        let claims = b64.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature = self
            .key
            .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
            .and_then(|s| s.sign(signing_input.as_bytes()).ok())
            .ok_or_else(|| DispatchError::AppConfig {
                reason: format!("the key in {} could not sign the app's JWT", self.key_var),
            })?;
        Ok(Token::from_secret(format!(
            "{signing_input}.{}",
            b64.encode(signature)
        )))
    }
}

/// An installation token and when it expires (Unix seconds; `None` when GitHub did not
/// say, then it is treated as valid for the hour GitHub documents).
#[derive(Debug)]
pub struct Installation {
    /// The token.
    pub token: Token,
    /// Expiry, Unix seconds.
    pub expires_unix: Option<i64>,
}

#[derive(Deserialize)]
struct InstallationRef {
    id: u64,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The installation token of the app's installation on the owner of `github`
/// (`owner/name`), from the API at `api_url`.
///
/// Errors: [`DispatchError::NotInstalled`] when the app has no installation that sees
/// `github` (404); [`DispatchError::AppRejected`] when GitHub refuses the JWT (401) or
/// the token (403); otherwise the call's [`DispatchError`].
pub async fn installation_token(
    api_url: &str,
    creds: &AppCredentials,
    github: &str,
    policy: RetryPolicy,
) -> Result<Installation, DispatchError> {
    let jwt = creds.jwt(crate::support::time::now_unix())?;
    let client = Client::new(api_url, &jwt, policy).map_err(|e| DispatchError::Invalid {
        repo: github.to_owned(),
        reason: format!("{e:#}"),
    })?;
    let owner = github.split('/').next().unwrap_or(github).to_owned();
    let reply = client
        .request(
            github,
            http::Method::GET,
            &format!("/repos/{github}/installation"),
            None,
        )
        .await
        .map_err(|e| app_error(e, &owner, github, creds))?;
    let inst: InstallationRef = client.parse(github, "the installation lookup", &reply)?;
    let route = format!("/app/installations/{}/access_tokens", inst.id);
    let reply = client
        .request(github, http::Method::POST, &route, None)
        .await
        .map_err(|e| app_error(e, &owner, github, creds))?;
    let t: AccessToken = client.parse(github, "the installation token", &reply)?;
    Ok(Installation {
        token: Token::from_secret(t.token),
        expires_unix: t.expires_at.as_deref().and_then(super::runs::unix_time),
    })
}

/// The app's view of an error of the installation calls: 404 is "not installed on the
/// owner", 401 and 403 are the app's credentials or permissions.
fn app_error(e: DispatchError, owner: &str, github: &str, creds: &AppCredentials) -> DispatchError {
    match e {
        DispatchError::NoAccess { status: 404, .. } => DispatchError::NotInstalled {
            owner: owner.to_owned(),
            repo: github.to_owned(),
        },
        DispatchError::BadCredentials { repo } => DispatchError::AppRejected {
            repo,
            status: 401,
            message: format!(
                "check that {} holds the app's id and {} its current private key, and that this machine's clock is right",
                creds.id_var, creds.key_var
            ),
        },
        DispatchError::NoAccess {
            repo,
            status,
            message,
        } => DispatchError::AppRejected {
            repo,
            status,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../tests/it/app-test-key.pem");
    const PUBLIC_DER_B64: &str = include_str!("../../../tests/it/app-test-key.pub.b64");

    #[test]
    fn the_jwt_is_rs256_with_githubs_claims_and_verifies_with_the_public_key() {
        let creds = AppCredentials::parse("12345", KEY, "APP_ID", "APP_KEY").unwrap();
        let jwt = creds.jwt(1_000_000).unwrap();
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"iat": 999_940, "exp": 999_940 + 540, "iss": "12345"})
        );
        let public = base64::engine::general_purpose::STANDARD
            .decode(PUBLIC_DER_B64.trim())
            .unwrap();
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let (_, verifiers) = algs
            .mapping
            .iter()
            .find(|(s, _)| *s == SignatureScheme::RSA_PKCS1_SHA256)
            .unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = b64.decode(parts[2]).unwrap();
        verifiers[0]
            .verify_signature(&public, signed.as_bytes(), &sig)
            .expect("the signature verifies");
        let mut tampered = sig.clone();
        tampered[0] ^= 1;
        assert!(verifiers[0]
            .verify_signature(&public, signed.as_bytes(), &tampered)
            .is_err());
        assert!(!format!("{creds:?}").contains("PRIVATE"), "{creds:?}");
    }

    #[test]
    fn keys_with_escaped_newlines_are_read_and_bad_config_says_what_to_set() {
        let escaped = KEY.replace('\n', "\\n");
        AppCredentials::parse("Iv1.abc", &escaped, "A", "K").unwrap();
        let e = AppCredentials::parse("12 3", KEY, "A", "K").unwrap_err();
        assert!(
            e.to_string().contains("A does not hold a GitHub App id"),
            "{e}"
        );
        let e = AppCredentials::parse("1", "not a key", "A", "K").unwrap_err();
        assert!(
            e.to_string().contains("K does not hold a PEM private key"),
            "{e}"
        );
        assert_eq!(e.exit_code().code(), 2);
    }
}
