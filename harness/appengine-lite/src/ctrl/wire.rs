//! HTTP/1.x on pv-ctrl's socket, byte for byte as upstream's libevent
//! server answers (checked on the real appengine):
//!
//! - HTTP/1.0: `HTTP/1.0 <code> <reason>`, `Content-Type`, blank line,
//!   body, then the connection closes — no `Content-Length`, no `Date`.
//! - HTTP/1.1: `Content-Type`, `Date`, `Content-Length`, and `Connection:
//!   close` (then closing) when the request asked for it; otherwise the
//!   connection stays open for the next request.
//! - Any status may carry a body, 204 included (upstream's "already
//!   unclaimed" is a 204 with an `Error` body, and no `Content-Length`).
//! - A `Host` other than absent, empty or `localhost` gets no answer: the
//!   connection is closed.
//!
//! Requests are read whole (head, then `Content-Length` bytes of body); a
//! client that half-closes after sending (pvcurl's `nc -N`) still gets its
//! answer.

use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body read into memory (objects are the big ones).
pub const MAX_BODY: usize = 512 * 1024 * 1024;

/// One request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub uri: String,
    /// `uri` without the query.
    pub path: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub code: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON body with `code`.
    pub fn json(code: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            code,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Upstream's error shape `{"Error":"<msg>"}`.
    pub fn error(code: u16, msg: &str) -> Self {
        Self::json(code, format!("{{\"Error\":\"{msg}\"}}"))
    }

    /// 200 with an empty body.
    pub fn ok() -> Self {
        Self::json(200, Vec::new())
    }
}

/// Reason phrase libevent uses for `code`.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        411 => "Length Required",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// What reading a request gave.
enum Read {
    Request(Request),
    /// Clean end of the connection between requests.
    Closed,
    /// Garbage or an oversized request: close.
    Bad,
}

/// Serves requests on one connection until it closes; `handle` answers
/// each request, `None` meaning "close without reply".
pub async fn serve<F, Fut>(mut stream: UnixStream, handle: F)
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Option<Response>>,
{
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Read::Request(r) => r,
            Read::Closed | Read::Bad => return,
        };
        let version = req.version;
        let close = version == 0
            || req
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let Some(resp) = handle(req).await else {
            return;
        };
        let bytes = render(&resp, version, close);
        if stream.write_all(&bytes).await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// The response bytes for a request of HTTP/1.`version`.
pub fn render(resp: &Response, version: u8, close: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.{version} {} {}\r\nContent-Type: {}\r\n",
        resp.code,
        reason(resp.code),
        resp.content_type
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if version >= 1 {
        head.push_str(&format!("Date: {}\r\n", http_date(SystemTime::now())));
        // libevent sends a 204's body but no length for it.
        if resp.code != 204 {
            head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    out
}

async fn read_request(stream: &mut UnixStream, buf: &mut Vec<u8>) -> Read {
    let mut chunk = [0u8; 16 * 1024];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Read::Bad;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => {
                return if buf.is_empty() {
                    Read::Closed
                } else {
                    Read::Bad
                }
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Read::Bad,
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let (method, uri, version, headers) = match parsed.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => (
            parsed.method.unwrap_or("").to_owned(),
            parsed.path.unwrap_or("/").to_owned(),
            parsed.version.unwrap_or(0),
            parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).trim().to_owned(),
                    )
                })
                .collect::<Vec<_>>(),
        ),
        _ => return Read::Bad,
    };
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if len > MAX_BODY {
        return Read::Bad;
    }
    buf.drain(..head_len);
    while buf.len() < len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Read::Bad,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    let path = uri.split('?').next().unwrap_or("").to_owned();
    Read::Request(Request {
        method,
        uri,
        path,
        version,
        headers,
        body,
    })
}

/// RFC 7231 date, as libevent writes it.
fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d, hh, mm, ss) = crate::pvlog::civil(secs);
    let wday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
        [secs.div_euclid(86_400).rem_euclid(7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!("{wday}, {d:02} {month} {y} {hh:02}:{mm:02}:{ss:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real appengine's answer to `GET /nope` over HTTP/1.0.
    #[test]
    fn http10_reply_has_no_length_and_no_date() {
        let r = Response::error(400, "unknown endpoint: /nope");
        assert_eq!(
            String::from_utf8(render(&r, 0, true)).expect("utf-8"),
            "HTTP/1.0 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{\"Error\":\"unknown endpoint: /nope\"}"
        );
    }

    #[test]
    fn http11_reply_has_date_length_and_connection() {
        let r = Response::json(200, "[]");
        let s = String::from_utf8(render(&r, 1, true)).expect("utf-8");
        assert!(
            s.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: "),
            "{s}"
        );
        assert!(
            s.ends_with(" GMT\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"),
            "{s}"
        );
        let keep = String::from_utf8(render(&r, 1, false)).expect("utf-8");
        assert!(!keep.contains("Connection"), "{keep}");
    }

    #[test]
    fn date_format() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_142_657);
        assert_eq!(http_date(t), "Tue, 01 Dec 2026 16:30:57 GMT");
    }
}
