//! The CLI's side of the API: HTTP/1.1 over the daemon's Unix socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the gantry daemon is not running (nothing is listening on {0}); start it with `systemctl start gantry` or `gantry daemon`, or point GANTRY_SOCKET at its socket"
    )]
    NotRunning(PathBuf),
    #[error("not allowed to use the gantry daemon at {0}: {1}")]
    Forbidden(PathBuf, String),
    #[error("talking to the gantry daemon: {0}")]
    Http(String),
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
}

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    ClientError::Forbidden(self.socket.clone(), e.to_string())
                }
                _ => ClientError::NotRunning(self.socket.clone()),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gantry")
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// A JSON request; API errors become `ClientError::Api` with the daemon's message.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let (status, text) = self.body(method, path, body).await?;
        // 422 carries a result too: a rejected reload with its errors.
        if !status.is_success() && status != StatusCode::UNPROCESSABLE_ENTITY {
            return Err(api_error(status, &text));
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// A request and response of the shared protocol types (`crate::protocol`).
    pub async fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let value = self.json(method, path, body).await?;
        serde_json::from_value(value)
            .map_err(|e| ClientError::Http(format!("unexpected answer to {path}: {e}")))
    }

    /// Plain text (logs, metrics).
    pub async fn text(&self, path: &str) -> Result<String, ClientError> {
        let (status, text) = self.body(Method::GET, path, None).await?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(api_error(status, &text))
        }
    }

    /// A whole response: its status and its body as text.
    async fn body(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, String), ClientError> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        Ok((status, read_text(response).await?))
    }

    /// Streams NDJSON lines to `each` until the stream ends.
    pub async fn lines(
        &self,
        path: &str,
        mut each: impl FnMut(serde_json::Value),
    ) -> Result<(), ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(api_error(status, &read_text(response).await?));
        }
        let mut body = response.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                pending.extend_from_slice(data);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    if let Ok(v) = serde_json::from_slice(&line) {
                        each(v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// A whole response body as text.
async fn read_text(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<String, ClientError> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The API's `{"code", "message"}` error, or the raw body when it is not one.
fn api_error(status: StatusCode, text: &str) -> ClientError {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    ClientError::Api {
        status,
        code: value["code"].as_str().unwrap_or("error").into(),
        message: value["message"].as_str().unwrap_or(text).into(),
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
