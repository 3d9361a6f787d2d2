//! Posting as one of the hive's own users (an agent) straight through the homeserver, as the
//! appservice does (its token, identity assertion with `user_id`): for a test that needs an
//! agent's message with a body of its choosing (`send_message` prefixes the sender's name).

use matrix_sdk::ruma::RoomId;

use super::TestHive;

/// Posts the plain text `body` in `room` as `user` (a Matrix ID in the appservice's
/// namespace, already a member of the room); the new event's id.
pub async fn post_as(hive: &TestHive, user: &str, room: &RoomId, body: &str) -> String {
    let token = hyperhive::c0re::registration::Tokens::load(&hive.data)
        .unwrap()
        .as_token;
    let base = hive.cfg.homeserver_url.to_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/send/m.room.message/test-{nanos}?user_id={}",
        base.trim_end_matches('/'),
        urlencode(room.as_str()),
        urlencode(user),
    );
    let resp = reqwest::Client::new()
        .put(url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "msgtype": "m.text", "body": body }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(status.is_success(), "posting as {user}: {status} {answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

/// `s` with everything but unreserved characters percent-encoded (a path segment).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
