//! Which credentials a chain command uses, and the [`Clients`] that hand out one
//! [`Client`] per repo owner: a token (`[chain] token-env`, else `GITHUB_TOKEN`) serves
//! every owner with one client; a GitHub App ([`super::app`]) gets one installation
//! token per owner, minted on first use and again shortly before it expires (a release
//! walk can outlast the hour a token lives).
//!
//! Only variable names are ever shown ([`Credentials::describe`]); secrets stay in
//! [`Token`] and [`AppCredentials`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::app::{self, AppCredentials};
use super::client::{Client, RetryPolicy};
use super::{DispatchError, Token};

/// Seconds before an installation token's expiry at which a new one is minted.
const REFRESH_MARGIN_SECS: i64 = 5 * 60;
/// How long an installation token is trusted when GitHub gave no expiry (its documented
/// lifetime is an hour).
const DEFAULT_LIFETIME_SECS: i64 = 55 * 60;

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A token, and the variable it came from.
    Token(Token, String),
    /// A GitHub App.
    App(AppCredentials),
}

impl Credentials {
    /// The credentials the environment offers: the app when `app` names two variables
    /// that are both set (`[chain] app-id-env`, `private-key-env`), else the token
    /// ([`Token::from_env`] with `token_var`).
    ///
    /// Errors: [`DispatchError::AppConfig`] for an unusable app id or key;
    /// [`DispatchError::MissingToken`] when neither is set, naming every variable tried.
    pub fn from_env(
        token_var: Option<&str>,
        app: Option<(&str, &str)>,
    ) -> Result<Credentials, DispatchError> {
        if let Some((id_var, key_var)) = app {
            if let Some(creds) = AppCredentials::from_env(id_var, key_var)? {
                return Ok(Credentials::App(creds));
            }
        }
        match Token::from_env(token_var) {
            Ok((token, var)) => Ok(Credentials::Token(token, var)),
            Err(DispatchError::MissingToken { mut tried }) => {
                if let Some((id_var, key_var)) = app {
                    tried.push(format!("{id_var} and {key_var} (a GitHub App)"));
                }
                Err(DispatchError::MissingToken { tried })
            }
            Err(e) => Err(e),
        }
    }

    /// What is used, by variable names only (`token from GITHUB_TOKEN`, `GitHub App
    /// from BLLVM_APP_ID / BLLVM_APP_KEY`).
    pub fn describe(&self) -> String {
        match self {
            Credentials::Token(_, var) => format!("token from {var}"),
            Credentials::App(a) => format!(
                "GitHub App from {} / {} (an installation token per owner)",
                a.id_var, a.key_var
            ),
        }
    }
}

/// A client per repo owner for one set of credentials.
pub struct Clients {
    api_url: String,
    policy: RetryPolicy,
    creds: Credentials,
    /// A token's one client, which serves every owner.
    token_client: Option<Arc<Client>>,
    /// An app's clients by owner, with the Unix time after which one is minted again.
    cache: Mutex<BTreeMap<String, (Arc<Client>, i64)>>,
}

impl Clients {
    /// Clients for the API at `api_url`.
    ///
    /// Errors: an API URL that octocrab cannot use (checked now, before any request).
    pub fn new(api_url: &str, creds: Credentials, policy: RetryPolicy) -> anyhow::Result<Clients> {
        let probe = match &creds {
            Credentials::Token(t, _) => t.clone(),
            Credentials::App(_) => Token::from_secret(String::new()),
        };
        let first = Arc::new(Client::new(api_url, &probe, policy)?);
        Ok(Clients {
            api_url: api_url.to_owned(),
            policy,
            token_client: matches!(creds, Credentials::Token(..)).then_some(first),
            creds,
            cache: Mutex::new(BTreeMap::new()),
        })
    }

    /// The client for requests about `github` (`owner/name`).
    ///
    /// Errors: with an app, the errors of [`app::installation_token`].
    pub async fn for_repo(&self, github: &str) -> Result<Arc<Client>, DispatchError> {
        let creds = match (&self.creds, &self.token_client) {
            (Credentials::App(creds), _) => creds,
            (Credentials::Token(..), Some(client)) => return Ok(client.clone()),
            (Credentials::Token(..), None) => {
                return Err(DispatchError::MissingToken { tried: Vec::new() })
            }
        };
        let owner = github.split('/').next().unwrap_or(github).to_owned();
        let now = crate::support::time::now_unix() as i64;
        if let Some((c, until)) = self.lock().get(&owner) {
            if now < *until {
                return Ok(c.clone());
            }
        }
        let inst = app::installation_token(&self.api_url, creds, github, self.policy).await?;
        let until = inst.expires_unix.unwrap_or(now + DEFAULT_LIFETIME_SECS) - REFRESH_MARGIN_SECS;
        let client = Client::new(&self.api_url, &inst.token, self.policy).map_err(|e| {
            DispatchError::Invalid {
                repo: github.to_owned(),
                reason: format!("{e:#}"),
            }
        })?;
        let client = Arc::new(client);
        self.lock().insert(owner, (client.clone(), until));
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Arc<Client>, i64)>> {
        // A poisoned lock only means another task panicked while holding the map, which
        // holds no invariant a panic could break: keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
