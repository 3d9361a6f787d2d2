//! A core on a fresh temp data dir, for the router and view tests (`oneshot`, no network, no
//! homeserver): its tokens made as `prepare_data_dir` makes them, then [`Core::new`].

use crate::agent_spec::AgentSpec;
use crate::c0re::Core;
use crate::c0re::registration::Tokens;
use crate::config::Config;

/// The core, its tokens, and the data dir it lives in (removed when dropped).
pub(crate) struct TestCore {
    pub core: Core,
    pub tokens: Tokens,
    pub dir: tempfile::TempDir,
}

/// A core with the built-in configuration and `specs`.
pub(crate) fn test_core(specs: Vec<AgentSpec>) -> TestCore {
    let cfg = Config::load(None).expect("the built-in configuration is valid");
    test_core_with(cfg, specs)
}

/// A core with `cfg` and `specs`.
pub(crate) fn test_core_with(cfg: Config, specs: Vec<AgentSpec>) -> TestCore {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tokens = Tokens::load_or_create(dir.path()).expect("tokens are made");
    let core = Core::new(
        cfg,
        dir.path(),
        specs,
        tokio_util::sync::CancellationToken::new(),
    )
    .expect("a core on a temp dir");
    TestCore { core, tokens, dir }
}
