# NixOS VM test of services.hyperhive with the nixos-container runtime: an embedded Synapse,
# the scripted `hello` bot in its container, an operator driven over the client-server API from
# the test script. The operator says ping (pong, from inside the container), proposes a change
# to hello's config with `hive config propose`, approves it with ✅ in #hive-approvals, and sees
# the container restarted on the approved sha answer with the new reply.
#
# NOT RUN YET: written on machines without nixpkgs (docs/nixos.md). On x86_64-linux with KVM:
#   nix build .#checks.x86_64-linux.vm -L
{ pkgs, module }:
pkgs.testers.runNixOSTest {
  name = "hyperhive";
  nodes.host = { ... }: {
    imports = [ module ];
    virtualisation.memorySize = 4096;
    virtualisation.cores = 2;
    networking.hostName = "host";
    services.hyperhive = {
      enable = true;
      operators = [ "@operator:host" ];
      settings.runtime.kind = "nixos-container";
      bots.hello = {
        display_name = "hello";
        brain.kind = "scripted";
        brain.rules = [ { equals = "ping"; reply = "pong"; } ];
      };
    };
    services.matrix-synapse.settings.registration_shared_secret = "test-secret";
  };

  testScript = ''
    import hashlib, hmac, json, shlex, urllib.parse

    host.wait_for_unit("matrix-synapse.service")
    host.wait_for_unit("hyperhive.service")
    host.wait_for_open_port(8008)

    def api(method, path, body=None, token=None):
        cmd = ["curl", "-sf", "-X", method, "-H", "Content-Type: application/json"]
        if token:
            cmd += ["-H", f"Authorization: Bearer {token}"]
        if body is not None:
            cmd += ["--data", json.dumps(body)]
        cmd.append(f"http://127.0.0.1:8008{path}")
        out = host.succeed(" ".join(shlex.quote(c) for c in cmd))
        return json.loads(out) if out.strip() else {}

    # The operator, registered with the shared secret.
    nonce = api("GET", "/_synapse/admin/v1/register")["nonce"]
    mac = hmac.new(b"test-secret", digestmod=hashlib.sha1)
    mac.update(f"{nonce}\0operator\0operator-pw\0notadmin".encode())
    token = api("POST", "/_synapse/admin/v1/register", {
        "nonce": nonce, "username": "operator", "password": "operator-pw",
        "admin": False, "mac": mac.hexdigest(),
    })["access_token"]
    # The hive started at boot, before the operator existed: its warm start invites them now.
    host.succeed("systemctl restart hyperhive.service")
    host.wait_for_unit("hyperhive.service")

    def room_of(alias):
        a = urllib.parse.quote(f"#{alias}:host")
        with subtest(f"#{alias} exists"):
            host.wait_until_succeeds(
                f"curl -sf http://127.0.0.1:8008/_matrix/client/v3/directory/room/{a}", timeout=120)
        return api("GET", f"/_matrix/client/v3/directory/room/{a}", token=token)["room_id"]

    def join(room):
        # The core invites the operator to every hive room; joining may race the invite.
        host.wait_until_succeeds(
            "curl -sf -X POST -H 'Authorization: Bearer " + token + "' -H 'Content-Type: application/json' "
            + "--data '{}' http://127.0.0.1:8008/_matrix/client/v3/join/" + urllib.parse.quote(room),
            timeout=120)

    txn = [0]
    def send(room, content, kind="m.room.message"):
        txn[0] += 1
        r = urllib.parse.quote(room)
        return api("PUT", f"/_matrix/client/v3/rooms/{r}/send/{kind}/t{txn[0]}", content, token)["event_id"]

    def messages(room):
        r = urllib.parse.quote(room)
        got = api("GET", f"/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=100", token=token)
        return [e for e in got["chunk"] if e["type"] == "m.room.message"]

    def wait_for(room, pred, what, timeout=180):
        for _ in range(timeout // 2):
            for e in messages(room):
                if pred(e):
                    return e
            host.sleep(2)
        raise Exception(f"timed out waiting for {what}: {[e['content'].get('body') for e in messages(room)]}")

    inbox = room_of("agent-hello")
    join(inbox)
    with subtest("hello answers from its container"):
        send(inbox, {"msgtype": "m.text", "body": "ping"})
        wait_for(inbox, lambda e: e["content"].get("body") == "pong", "pong")
        c = host.succeed("machinectl list --no-legend | awk '/hh-/{print $1}'").strip()
        assert c.startswith("hh-"), f"no agent container runs: {c!r}"
        host.succeed(f"systemctl -M {c} is-active hyperhive-agent.service")

    with subtest("an approved config restarts that agent's container on the approved sha"):
        container = host.succeed("machinectl list --no-legend | awk '/hh-/{print $1}'").strip()
        before = host.succeed(f"systemctl show -p InvocationID --value container@{container}.service").strip()
        host.succeed("""cat > /tmp/hello.toml <<'TOML'
    display_name = "hello"
    [brain]
    kind = "scripted"
    [[brain.rules]]
    equals = "ping"
    reply = "pong, version two"
    TOML""")
        host.succeed("hive config propose hello --file /tmp/hello.toml -m 'a second pong'")
        approvals = room_of("hive-approvals")
        join(approvals)
        request = wait_for(approvals, lambda e: e["content"].get("body", "").startswith("Request #1: "), "request #1")
        # Not applied before the ✅: hello answers with the old reply.
        send(inbox, {"msgtype": "m.text", "body": "ping"})
        for _ in range(60):
            if sum(e["content"].get("body") == "pong" for e in messages(inbox)) >= 2:
                break
            host.sleep(2)
        else:
            raise Exception("hello did not answer the second ping")
        assert not any(e["content"].get("body") == "pong, version two" for e in messages(inbox))
        send(approvals, {"m.relates_to": {"rel_type": "m.annotation", "event_id": request["event_id"], "key": "✅"}}, "m.reaction")
        host.wait_until_succeeds(
            f"test $(systemctl show -p InvocationID --value container@{container}.service) != {before}", timeout=180)
        send(inbox, {"msgtype": "m.text", "body": "ping"})
        wait_for(inbox, lambda e: e["content"].get("body") == "pong, version two", "the approved reply")
        # The sha applied is the one the operator approved.
        rows = [json.loads(l) for l in host.succeed("hive audit --json").splitlines() if l.strip()]
        applied = [r for r in rows if r["action"] == "apply" and r["agent"] == "hello" and r["outcome"] == "applied"]
        assert len(applied) == 1, rows
        filed = [r for r in rows if r.get("approval_id") == 1 and r.get("sha")]
        assert filed and all(r["sha"] == applied[0]["sha"] for r in filed), rows
        c2 = host.succeed("machinectl list --no-legend | awk '/hh-/{print $1}'").strip()
        assert c2 == container, f"the same agent's container: {c2!r}"
  '';
}
