//! The `nixos-container` runtime: each agent in a NixOS container of its own, declared by the
//! host's NixOS module (`nix/module.nix`, from the agent's `agent.toml` read as data through
//! `nix/agents.nix`), started and stopped by the core.
//!
//! The names and uid ranges the module declares are computed here and in `nix/agents.nix`
//! from the agent's name alone; `tests/nix.rs` evaluates the Nix side and compares.

use sha2::{Digest, Sha256};

use crate::agent_spec::AgentName;

/// The container an agent runs in: `hh-` and the first 8 hex digits of the SHA-256 of its
/// name. `nixos-container` allows 11 characters (the host side of its veth is `ve-<name>`,
/// and an interface name has 15), fewer than an agent's name may have.
pub fn container_name(agent: &AgentName) -> String {
    format!("hh-{}", &hex_digest(agent.as_str())[..8])
}

/// The first host uid of the agent's container (`privateUsers`): root inside is this uid
/// outside, and the container owns the 65536 above it. `0x4000_0000 + (h mod 0x3fff) * 65536`,
/// `h` the first 4 hex digits of the SHA-256 of its name: far above any system or
/// `runtime.uid_base` uid, below 2^31.
pub fn uid_base(agent: &AgentName) -> u32 {
    let h = u32::from_str_radix(&hex_digest(agent.as_str())[..4], 16).expect("hex digits");
    0x4000_0000 + (h % 0x3fff) * 0x1_0000
}

fn hex_digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_nixos_container_and_are_stable() {
        for n in ["hm1nd", "a", "a-very-long-agent-name-indeed"] {
            let a = AgentName::parse(n).unwrap();
            let c = container_name(&a);
            assert_eq!(c.len(), 11, "{c}");
            assert!(c.starts_with("hh-"), "{c}");
            assert_eq!(c, container_name(&a));
            let b = uid_base(&a);
            assert!((0x4000_0000..0x8000_0000).contains(&b), "{b:#x}");
            assert_eq!(b % 0x1_0000, 0);
        }
        // Fixed points the Nix side must reproduce (`tests/nix.rs` checks every bot).
        let hm1nd = AgentName::parse("hm1nd").unwrap();
        assert_eq!(
            container_name(&hm1nd),
            format!("hh-{}", &hex_digest("hm1nd")[..8])
        );
    }
}
