//! A minimal HTTP/1.0 GET for tests that read a server's admin endpoints.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Bounds connecting, writing and each read of one request.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A response: status code and body text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, such as 200.
    pub status: u16,
    /// Body, decoded as UTF-8 with replacement characters.
    pub body: String,
}

/// Sends `GET path` to 127.0.0.1:`port` and reads the whole response; `None` when the
/// server does not answer or the answer is not HTTP.
pub fn http_get(port: u16, path: &str) -> Option<HttpResponse> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;

    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    Some(HttpResponse { status, body: body.to_owned() })
}
