//! The test harness keeps the evidence of a failure: a wait whose operator can no longer sync
//! fails at once and says why (rather than timing out with nothing to show), and a test that
//! fails keeps its directory — every log, the databases — instead of deleting it.

mod common;

use std::time::Duration;

use common::{Operator, TestHive};
use matrix_sdk::ruma::api::client::session::logout_all;

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_sync_fails_the_wait_at_once_and_a_failed_test_keeps_its_dir() {
    let hive = TestHive::new(&[]).await;
    let op = hive.operator().await;
    let room = op.client.create_room(Default::default()).await.unwrap();

    // Every token of the operator's is revoked (from a second session): their sync is refused
    // from now on, so no wait can ever be met.
    let other = Operator::login(&hive.operator).await;
    other
        .client
        .send(logout_all::v3::Request::new())
        .await
        .unwrap();
    let wait = tokio::spawn(async move {
        op.wait_until(&room, Duration::from_secs(300), "nothing", |_| false)
            .await;
    });
    let err = wait.await.expect_err("the wait cannot succeed");
    let msg = match err.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| format!("{p:?}")),
        Err(e) => panic!("the wait was cancelled, not failed: {e}"),
    };
    assert!(
        msg.contains("the operator's sync died") && msg.contains("M_UNKNOWN_TOKEN"),
        "the wait says the sync died, and why: {msg}"
    );
    assert!(
        !msg.contains("timed out"),
        "it failed at once, not at its deadline: {msg}"
    );
    assert!(
        msg.contains("homeserver.log"),
        "it prints the homeserver's log: {msg}"
    );

    // A test that panics while its hive is alive keeps the directory, logs included.
    let dir = hive.dir.path().to_owned();
    let failed = std::thread::spawn(move || {
        let _hive = hive;
        panic!("a test failing on purpose");
    })
    .join();
    assert!(failed.is_err());
    let kept = dir.join("data/synapse/homeserver.log");
    assert!(kept.is_file(), "{} was kept", kept.display());
    std::fs::remove_dir_all(&dir).unwrap();
}
