//! Probes that tell when a starting nats-server listens and is healthy.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Bounds one `/healthz` request, so a stuck server cannot stall the
/// readiness loop past its overall timeout by more than this.
const HEALTHZ_IO_TIMEOUT: Duration = Duration::from_millis(500);

/// The client and monitoring ports a nats-server reported in its ports file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenPorts {
    pub client: u16,
    pub monitor: u16,
}

/// Contents of `<executable>_<pid>.ports`, which nats-server writes to
/// `--ports_file_dir` once its listeners are bound.
#[derive(Debug, Deserialize)]
struct PortsFile {
    #[serde(default)]
    nats: Vec<String>,
    #[serde(default)]
    monitoring: Vec<String>,
}

/// Reads the ports file of process `pid` in `dir`.
///
/// Returns `None` while the file is missing or not yet complete, because the
/// server may be between creating and finishing it.
pub(crate) fn read_ports_file(dir: &Path, pid: u32) -> Option<ListenPorts> {
    let suffix = format!("_{pid}.ports");
    let path = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.ends_with(&suffix)))?;

    let contents = std::fs::read_to_string(path).ok()?;
    let ports: PortsFile = serde_json::from_str(&contents).ok()?;

    Some(ListenPorts { client: port_of_url(ports.nats.first()?)?, monitor: port_of_url(ports.monitoring.first()?)? })
}

/// Parses the port of a URL such as `nats://127.0.0.1:4222`.
fn port_of_url(url: &str) -> Option<u16> {
    url.rsplit_once(':')?.1.trim_end_matches('/').parse().ok()
}

/// Sends `GET path` to the monitoring port on 127.0.0.1 and returns whether
/// the response status is 200.
pub(crate) fn healthz_ok(monitor_port: u16, path: &str) -> bool {
    http_get_status(monitor_port, path) == Some(200)
}

/// Sends a minimal HTTP/1.0 request and parses the status code. A hand-written
/// request avoids an HTTP client dependency for this one call.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, HEALTHZ_IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(HEALTHZ_IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(HEALTHZ_IO_TIMEOUT)).ok()?;

    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;

    // One read may return only part of the status line, so read until it ends.
    let mut response = Vec::new();
    let mut buffer = [0_u8; 256];
    while !response.contains(&b'\n') {
        let read = stream.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }

    parse_status_line(&response)
}

/// Parses the code from a status line such as `HTTP/1.1 200 OK`.
fn parse_status_line(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response).ok()?;
    let status_line = text.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_file_parsed_for_matching_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("nats-server_4242.ports"),
            r#"{"nats":["nats://127.0.0.1:37567"],"monitoring":["http://127.0.0.1:41661"]}"#,
        )
        .expect("write ports file");

        let ports = read_ports_file(dir.path(), 4242);

        assert_eq!(ports, Some(ListenPorts { client: 37567, monitor: 41661 }));
    }

    #[test]
    fn ports_file_of_other_pid_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("nats-server_1.ports"),
            r#"{"nats":["nats://127.0.0.1:1000"],"monitoring":["http://127.0.0.1:1001"]}"#,
        )
        .expect("write ports file");

        assert_eq!(read_ports_file(dir.path(), 11), None);
    }

    #[test]
    fn partial_ports_file_reads_as_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("nats-server_7.ports"), r#"{"nats":["nats://127."#).expect("write ports file");

        assert_eq!(read_ports_file(dir.path(), 7), None);
    }

    #[test]
    fn status_line_parsed() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(parse_status_line(b"garbage\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }
}
