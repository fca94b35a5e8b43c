//! One blocking JSON `POST` with a global timeout (webhooks), and one async `GET` with a
//! global timeout and a body size bound (the crates.io sparse index), over the HTTP stack
//! octocrab already compiles into this binary (hyper 1, hyper-util's legacy client, hyper-rustls with
//! rustls on ring and the system's root certificates), so webhooks and the index need no
//! HTTP client of their own (issue 12: one stack fewer to compile on every CI runner).
//!
//! HTTP/1.1 only, no redirects followed (a webhook that redirects is misconfigured), no
//! proxy. Knows nothing of CI; callers redact what they print (a URL may be a secret).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// POST `body` (JSON) to `url`; the whole exchange (connect, TLS, send, response head)
/// takes at most `timeout`. Returns the response status; the response body is not read.
///
/// Errors, as text that may contain the URL (the caller redacts): an invalid URL, no root
/// certificates for an `https` URL, a connection or TLS failure (with its causes), or
/// `timeout after N s`.
pub fn post_json(url: &str, body: String, timeout: Duration) -> Result<http::StatusCode, String> {
    let uri: http::Uri = url.parse().map_err(|e| {
        format!("invalid URL ({e}): it must be http://HOST/PATH or https://HOST/PATH")
    })?;
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "bllvm-ci")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("invalid request: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the async runtime: {e}"))?;
    rt.block_on(async {
        // Built inside the runtime: the client spawns each connection's task on it.
        let client: Client<_, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector(https)?);
        match tokio::time::timeout(timeout, client.request(request)).await {
            Err(_) => Err(format!("timeout after {} s", timeout.as_secs_f64())),
            Ok(Err(e)) => Err(with_causes(&e)),
            Ok(Ok(resp)) => Ok(resp.status()),
        }
    })
}

/// The answer to [`get`].
#[derive(Debug)]
pub struct Fetched {
    /// The response status.
    pub status: http::StatusCode,
    /// The body, or its first `max_bytes` bytes when `complete` is false.
    pub body: Vec<u8>,
    /// Whether the body was read whole.
    pub complete: bool,
}

/// GET `url` on the caller's runtime; the whole exchange (connect, TLS, send, response and
/// body) takes at most `timeout`, and at most `max_bytes` of the body are read.
///
/// Errors, as text that may contain the URL: as [`post_json`], and a body that breaks off.
pub async fn get(url: &str, timeout: Duration, max_bytes: usize) -> Result<Fetched, String> {
    use http_body_util::BodyExt;
    let uri: http::Uri = url.parse().map_err(|e| {
        format!("invalid URL ({e}): it must be http://HOST/PATH or https://HOST/PATH")
    })?;
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let request = http::Request::get(uri)
        .header(http::header::USER_AGENT, "bllvm-ci")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("invalid request: {e}"))?;
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector(https)?);
    let exchange = async {
        let resp = client.request(request).await.map_err(|e| with_causes(&e))?;
        let (parts, body) = resp.into_parts();
        let mut body = body;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| with_causes(&e))?;
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
                if out.len() > max_bytes {
                    out.truncate(max_bytes);
                    return Ok(Fetched {
                        status: parts.status,
                        body: out,
                        complete: false,
                    });
                }
            }
        }
        Ok(Fetched {
            status: parts.status,
            body: out,
            complete: true,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(format!("timeout after {} s", timeout.as_secs_f64())),
        Ok(r) => r,
    }
}

/// An HTTP and HTTPS connector with rustls on ring (octocrab's provider) and the system's
/// root certificates. Without any root certificate an `http` URL still works (an empty
/// root store) and an `https` one is an error saying what to install.
fn connector(https: bool) -> Result<HttpsConnector<HttpConnector>, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) if https => {
                return Err(format!(
            "no TLS root certificates on this machine ({e}): install the ca-certificates package"
        ))
            }
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS setup: {e}"))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
    Ok(builder.https_or_http().enable_http1().build())
}

/// The error and its causes on one line (hyper's `Display` alone says only "client error
/// (Connect)").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}
