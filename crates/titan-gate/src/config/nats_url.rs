//! `NATS_URL`: one server URL or a comma-separated list of them, as the NATS CLI and
//! clients accept, such as `nats://n1:4222,nats://n2:4222`.

use std::str::FromStr;

use async_nats::ServerAddr;

/// Schemes async-nats connects with.
const SCHEMES: [&str; 4] = ["nats://", "tls://", "ws://", "wss://"];

/// Parses a comma-separated list of NATS server URLs. An entry without a scheme gets
/// `nats://`, and one without a port gets 4222, as async-nats does. Returns a message
/// naming the first invalid entry and its position (from 1) when one is empty or invalid.
pub fn parse_server_list(text: &str) -> Result<Vec<ServerAddr>, String> {
    let mut servers = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        let position = index + 1;
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(format!("entry {position} of {text:?} is empty; separate URLs with single commas"));
        }
        if entry.contains("://") && !SCHEMES.iter().any(|scheme| entry.starts_with(scheme)) {
            return Err(format!("entry {position} {entry:?} has an unknown scheme; use nats:// or tls://"));
        }
        let server = ServerAddr::from_str(entry)
            .map_err(|error| format!("entry {position} {entry:?} is not a server URL: {error}"))?;
        servers.push(server);
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_url_parses() {
        let servers = parse_server_list("nats://127.0.0.1:4222").unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].host(), "127.0.0.1");
        assert_eq!(servers[0].port(), 4222);
    }

    #[test]
    fn list_parses_in_order() {
        let servers = parse_server_list("nats://a:4001, tls://b:4002,c").unwrap();
        let hosts: Vec<(&str, u16)> = servers.iter().map(|server| (server.host(), server.port())).collect();
        assert_eq!(hosts, [("a", 4001), ("b", 4002), ("c", 4222)]);
        assert!(servers[1].tls_required());
    }

    #[test]
    fn empty_entry_is_named() {
        let error = parse_server_list("nats://a:4001,,nats://b:4002").unwrap_err();
        assert!(error.contains("entry 2"), "{error}");
        assert!(error.contains("empty"), "{error}");
        let error = parse_server_list("nats://a:4001,").unwrap_err();
        assert!(error.contains("entry 2"), "{error}");
    }

    #[test]
    fn bad_entry_is_named() {
        let error = parse_server_list("nats://a:4001,http://b:80").unwrap_err();
        assert!(error.contains(r#"entry 2 "http://b:80""#), "{error}");
        assert!(error.contains("unknown scheme"), "{error}");
        let error = parse_server_list("nats://a:4001,nats://b:notaport").unwrap_err();
        assert!(error.contains(r#"entry 2 "nats://b:notaport""#), "{error}");
    }
}
