//! What exactly is wrong with an address as written: a bad octet, a missing or bad
//! prefix length, a name where an address belongs, a malformed MAC. A user who wrote
//! `10.0.0.300/24` needs to hear about the 300, not to be shown the CIDR form again.

use std::net::IpAddr;

use super::super::diagnostic::{Finding, clip};

/// Why `text` is not an IP address, as (reason, label, help); `None` when it is one.
pub fn ip_problem(text: &str) -> Option<(String, String, String)> {
    if text.parse::<IpAddr>().is_ok() {
        return None;
    }
    let shown = clip(text);
    if text.is_empty() {
        return Some((
            "the address is empty".to_string(),
            "no address".to_string(),
            "write an address such as 10.0.0.1".to_string(),
        ));
    }
    if text.contains(':') {
        return Some((
            format!("`{shown}` is not a valid IPv6 address"),
            "not an IPv6 address".to_string(),
            "write eight groups of up to four hex digits separated by `:`, with `::` for one run of zero groups, like fd00::1".to_string(),
        ));
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Some(ipv4_problem(text));
    }
    let looks_like_a_name = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let help = if looks_like_a_name {
        "write the address itself, like 10.0.0.1: kvmlab does not resolve names"
    } else {
        "an IPv4 address is four numbers from 0 to 255 separated by dots, like 10.0.0.1"
    };
    Some((
        format!("`{shown}` is not an IP address"),
        "not an address".to_string(),
        help.to_string(),
    ))
}

/// Why `text`, made of digits and dots only, is not an IPv4 address.
fn ipv4_problem(text: &str) -> (String, String, String) {
    let four = "an IPv4 address is four numbers from 0 to 255 separated by dots, like 10.0.0.1";
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4 {
        return (
            format!(
                "`{}` has {} part{} where an IPv4 address has 4",
                clip(text),
                parts.len(),
                if parts.len() == 1 { "" } else { "s" }
            ),
            format!("{} of 4 parts", parts.len()),
            four.to_string(),
        );
    }
    for part in parts {
        if part.is_empty() {
            return (
                "an octet is empty (two dots in a row, or a dot at an end)".to_string(),
                "empty octet".to_string(),
                four.to_string(),
            );
        }
        if part.len() > 3 || part.parse::<u16>().is_ok_and(|n| n > 255) {
            let part = clip(part);
            return (
                format!("octet {part} is out of range"),
                format!("{part} is more than 255"),
                "each of the four numbers of an IPv4 address is 0 to 255".to_string(),
            );
        }
        if part.len() > 1 && part.starts_with('0') {
            let plain = part.trim_start_matches('0');
            let plain = if plain.is_empty() { "0" } else { plain };
            return (
                format!("octet `{part}` has a leading zero"),
                "leading zero".to_string(),
                format!(
                    "write it as {plain}: a leading zero reads as octal in some tools, so kvmlab refuses it"
                ),
            );
        }
    }
    (
        format!("`{}` is not an IPv4 address", clip(text)),
        "not an address".to_string(),
        four.to_string(),
    )
}

/// Why `text` is not a MAC address, as a finding; `None` when it is one.
pub fn mac_problem(text: &str) -> Option<Finding> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let shown = clip(text);
    let why = if parts.len() != 6 {
        format!(
            "it has {} part{} where a MAC address has 6",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        )
    } else if let Some(bad) = parts
        .iter()
        .find(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        format!("`{}` is not a byte in two hex digits", clip(bad))
    } else {
        return None;
    };
    Some(
        Finding::new(
            format!("invalid MAC address `{shown}`: {why}"),
            "not a MAC address",
        )
        .help("write six hex bytes separated by `:`, like 52:54:00:12:34:56"),
    )
}
