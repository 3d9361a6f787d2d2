# services.hyperhive: the hive as a NixOS service (docs/nixos.md). Shaped after nixpkgs' Matrix
# service modules (mautrix-telegram, matrix-hookshot, draupnir): a freeform TOML `settings` with
# typed defaults for the keys that matter, secrets by systemd credentials (never in the store),
# an optional embedded Synapse fed the generated appservice registration.
#
# NOT BUILT OR RUN HERE: the machines this was written on have no nixpkgs; only
# `nix-instantiate --parse` of this file has run (tests/nix.rs); its VM test is nix/tests/vm.nix. nix/agents.nix, which it uses
# for the agents' containers, is checked against the Rust code by pure evaluation.
{ config, lib, pkgs, ... }:
let
  cfg = config.services.hyperhive;
  toml = pkgs.formats.toml { };
  credDir = "/run/credentials/hyperhive.service";
  regDir = "/run/hyperhive-registration";

  # `bots` as a directory: the path given, or agent.toml files rendered from attrsets.
  botsDir =
    if builtins.isAttrs cfg.bots && !(lib.isDerivation cfg.bots) then
      pkgs.linkFarm "hyperhive-bots" (lib.mapAttrsToList
        (name: spec: { name = "${name}/agent.toml"; path = toml.generate "${name}-agent.toml" spec; })
        cfg.bots)
    else cfg.bots;

  # The agents as data (names, container names, uid bases, limits): pure, agent.toml read with
  # fromTOML only, never evaluated as Nix.
  agents = import ./agents.nix {
    bots = if builtins.isAttrs cfg.bots && !(lib.isDerivation cfg.bots) then null else cfg.bots;
    agents = if builtins.isAttrs cfg.bots && !(lib.isDerivation cfg.bots) then cfg.bots else { };
    defaults = cfg.settings.runtime.resources;
  };

  embedded = cfg.homeserver == "embedded";
  synapsePort = 8008;
  homeserverUrl = if embedded then "http://127.0.0.1:${toString synapsePort}/" else cfg.homeserver;

  settings = lib.recursiveUpdate cfg.settings {
    # The core never runs its own Synapse under NixOS: `hive c0re` against this one.
    homeserver = { embedded = false; url = homeserverUrl; };
    operators.users = cfg.operators;
  } // lib.optionalAttrs (cfg.federation.peers != [ ]) { peers = cfg.federation.peers; };
  configFile = toml.generate "hive.toml" settings;

  hive = cmd: "${cfg.package}/bin/hive --config ${configFile} ${cmd} --data-dir ${cfg.dataDir} --bots ${botsDir}";
  containers = cfg.settings.runtime.kind == "nixos-container";
in
{
  options.services.hyperhive = {
    enable = lib.mkEnableOption "hyperhive, a Matrix-native hive of LLM agents";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { } (this flake's package)";
      description = "The hyperhive package (its `hive` binary).";
    };

    settings = lib.mkOption {
      description = ''
        hive.toml (docs/configuration.md), as Nix. `homeserver.embedded` and `homeserver.url`
        are set by the module; refer to secrets as `/run/credentials/hyperhive.service/<name>`.
      '';
      default = { };
      type = lib.types.submodule {
        freeformType = toml.type;
        options = {
          hive.name = lib.mkOption { type = lib.types.str; default = "hyperhive"; description = "The hive's name."; };
          homeserver.server_name = lib.mkOption {
            type = lib.types.str;
            default = config.networking.hostName;
            defaultText = lib.literalExpression "config.networking.hostName";
            description = "The Matrix server name (user IDs end in it).";
          };
          appservice.listen = lib.mkOption {
            type = lib.types.str;
            default = "127.0.0.1:8009";
            description = "Where hive-c0re listens for the homeserver's transactions.";
          };
          runtime.kind = lib.mkOption {
            type = lib.types.enum [ "bwrap" "process" "external" "nixos-container" ];
            default = "bwrap";
            description = "How agents run: `bwrap` (each in a bubblewrap sandbox), or `nixos-container` (each in a NixOS container declared here, started and restarted by the core; docs/runtimes.md).";
          };
          runtime.resources = {
            memory = lib.mkOption { type = lib.types.str; default = "2G"; description = "Default memory ceiling of an agent (K/M/G/T)."; };
            cpu = lib.mkOption { type = lib.types.str; default = "100%"; description = "Default CPU share (percent of one core)."; };
            tasks = lib.mkOption { type = lib.types.ints.positive; default = 512; description = "Default task (process and thread) ceiling."; };
          };
        };
      };
    };

    bots = lib.mkOption {
      type = lib.types.either lib.types.path (lib.types.attrsOf toml.type);
      # The flake's own bots/ as a Nix path (not the package's copy: reading that at evaluation
      # would need the package built first).
      default = ../bots;
      defaultText = lib.literalExpression "the repository's bots/";
      description = ''
        The agents: a directory of `<name>/agent.toml` (+ `prompt.md`), or agent attrsets by
        name, rendered to agent.toml.
      '';
    };

    operators = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "@operator:${cfg.settings.homeserver.server_name}" ];
      defaultText = lib.literalExpression ''[ "@operator:''${server_name}" ]'';
      description = "Operators' Matrix IDs (`operators.users`).";
    };

    secrets = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { anthropic = "/etc/hyperhive/anthropic.key"; };
      description = ''
        Files passed to the service with systemd's LoadCredential, never copied to the store
        (give string paths, not Nix paths). Inside, `<name>` is at
        `/run/credentials/hyperhive.service/<name>`: point hive.toml's `*_file` keys there.
      '';
    };

    homeserver = lib.mkOption {
      type = lib.types.str;
      default = "embedded";
      description = ''
        `"embedded"`: enable services.matrix-synapse on this host, fed the hive's appservice
        registration; else the client-server URL of an existing homeserver (which must load
        `${regDir}/registration.yaml` itself).
      '';
    };

    federation.peers = lib.mkOption {
      type = lib.types.listOf toml.type;
      default = [ ];
      description = "hive.toml's `[[peers]]` (docs/federation.md).";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the federation port (`settings.federation.port`, default 8448).";
    };

    dataDir = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/hyperhive";
      description = "The hive's state (agents' state, config history, tokens).";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      assertions = [{
        # Every agent's name and [resources] are checked (agents.nix throws on a bad one),
        # whatever the runtime: an inline bot's name becomes a directory name.
        assertion = builtins.deepSeq (lib.mapAttrs (_: a: a.resources) agents) true;
        message = "services.hyperhive.bots: an agent is invalid";
      }
      {
        # Two agents on one uid range would see (and a destroy would kill) each other's
        # processes; the core refuses them too.
        assertion = !containers || (lib.allUnique (lib.mapAttrsToList (_: a: a.uidBase) agents)
          && lib.allUnique (lib.mapAttrsToList (_: a: a.container) agents));
        message = "services.hyperhive.bots: two agents share a container name or uid range: rename one";
      }
      {
        assertion = lib.all (p: !lib.hasPrefix builtins.storeDir (toString p)) (lib.attrValues cfg.secrets);
        message = "services.hyperhive.secrets: give paths outside the Nix store (as strings)";
      }];

      # `hive` for the host's admin, on this hive's config, data dir and bots (`hive status`,
      # `hive audit`, `hive config propose …`).
      environment.systemPackages = [
        (pkgs.writeShellScriptBin "hive" ''
          export HYPERHIVE_CONFIG=${lib.escapeShellArg configFile} HYPERHIVE_DATA_DIR=${lib.escapeShellArg cfg.dataDir} HYPERHIVE_BOTS_DIR=${lib.escapeShellArg botsDir}
          exec ${cfg.package}/bin/hive "$@"
        '')
      ];

      # Written by the core (src/c0re/registration.rs, mode 0600), copied where Synapse reads it.
      systemd.services.hyperhive-registration = {
        description = "hyperhive: the appservice registration";
        wantedBy = [ "multi-user.target" ];
        before = [ "hyperhive.service" ] ++ lib.optional embedded "matrix-synapse.service";
        requiredBy = lib.optional embedded "matrix-synapse.service";
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          StateDirectory = lib.mkIf (cfg.dataDir == "/var/lib/hyperhive") "hyperhive";
          StateDirectoryMode = "0700";
          RuntimeDirectory = "hyperhive-registration";
          RuntimeDirectoryMode = "0750";
          RuntimeDirectoryPreserve = true;
        };
        script = ''
          reg=$(${hive "registration"})
          # Synapse's user must enter the directory as well as read the file.
          chgrp ${if embedded then "matrix-synapse" else "root"} ${regDir}
          chmod 0750 ${regDir}
          install -m 0640 -o root -g ${if embedded then "matrix-synapse" else "root"} \
            "$reg" ${regDir}/registration.yaml
        '';
      };

      systemd.services.hyperhive = {
        description = "hyperhive: hive-c0re and its agents";
        wantedBy = [ "multi-user.target" ];
        requires = [ "hyperhive-registration.service" ];
        after = [ "network-online.target" "hyperhive-registration.service" ]
          ++ lib.optional embedded "matrix-synapse.service";
        wants = [ "network-online.target" ];
        bindsTo = lib.optional embedded "matrix-synapse.service";
        path = [ pkgs.git pkgs.bubblewrap pkgs.systemd ] ++ lib.optional containers pkgs.nixos-container;
        serviceConfig = {
          # Root, not a dedicated or DynamicUser: the nixos-container runtime starts and stops
          # `container@hh-*.service` and sets their limits (`systemctl set-property`), and the
          # bwrap runtime gives each agent a uid of its own; both need root. The hardening
          # below narrows what that root can touch: the data dir (and the containers' roots).
          ExecStart = hive "c0re";
          Restart = "on-failure";
          RestartSec = 5;
          LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") cfg.secrets;
          StateDirectory = lib.mkIf (cfg.dataDir == "/var/lib/hyperhive") "hyperhive";
          StateDirectoryMode = "0700";
          ProtectSystem = "strict";
          ReadWritePaths = [ cfg.dataDir ] ++ lib.optional containers "/var/lib/nixos-containers";
          ProtectHome = true;
          PrivateTmp = true;
          NoNewPrivileges = true;
          ProtectKernelTunables = true;
          ProtectKernelModules = true;
          ProtectControlGroups = !containers;
          ProtectClock = true;
          ProtectHostname = true;
          RestrictRealtime = true;
          LockPersonality = true;
          RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
          SystemCallArchitectures = "native";
          # @system-service, plus what sandboxes agents (bwrap: namespaces, mounts).
          SystemCallFilter = [ "@system-service" "@mount" "setns" "unshare" "pivot_root" "~@obsolete" ];
          UMask = "0077";
        };
      };
    }

    (lib.mkIf embedded {
      services.matrix-synapse = {
        enable = true;
        settings = {
          server_name = cfg.settings.homeserver.server_name;
          # nixpkgs defaults to PostgreSQL, which this module does not set up.
          database.name = lib.mkDefault "sqlite3";
          listeners = [{
            port = synapsePort;
            bind_addresses = [ "127.0.0.1" ];
            type = "http";
            tls = false;
            x_forwarded = false;
            resources = [{ names = [ "client" ]; compress = false; }];
          }];
          app_service_config_files = [ "${regDir}/registration.yaml" ];
        };
      };
      systemd.services.matrix-synapse = {
        after = [ "hyperhive-registration.service" ];
        requires = [ "hyperhive-registration.service" ];
      };
    })

    (lib.mkIf cfg.openFirewall {
      networking.firewall.allowedTCPPorts = [ (cfg.settings.federation.port or 8448) ];
    })

    # One NixOS container per agent (docs/runtimes.md, "nixos-container"): the agent's state
    # read-write, its socket and config generations read-only, at the host's paths; its own
    # uid range; no network but loopback; started by the core, not at boot.
    (lib.mkIf containers {
      containers = lib.mapAttrs'
        (name: a: lib.nameValuePair a.container {
          autoStart = false;
          # A fresh root at every start: nothing container root leaves survives but the
          # bind-mounted state dir.
          ephemeral = true;
          # The host's nix-daemon is bound into every container by default: a build there
          # (fixed-output builds have the network) would undo privateNetwork.
          extraFlags = [ "--inaccessible=/nix/var/nix/daemon-socket" ];
          privateNetwork = true;
          privateUsers = a.uidBase;
          bindMounts = {
            "${cfg.dataDir}/agents/${name}/state" = { hostPath = "${cfg.dataDir}/agents/${name}/state"; isReadOnly = false; };
            "${cfg.dataDir}/agents/${name}/sock" = { hostPath = "${cfg.dataDir}/agents/${name}/sock"; isReadOnly = true; };
            "${cfg.dataDir}/agents/${name}/gen" = { hostPath = "${cfg.dataDir}/agents/${name}/gen"; isReadOnly = true; };
          };
          config = { ... }: {
            system.stateVersion = config.system.stateVersion;
            networking.useHostResolvConf = lib.mkForce false;
          };
        })
        agents;

      # Limits at rebuild time; the core re-applies the approved values with
      # `systemctl set-property --runtime` when it (re)starts a container.
      systemd.services = lib.mapAttrs'
        (name: a: lib.nameValuePair "container@${a.container}" {
          serviceConfig = {
            MemoryMax = toString a.resources.memoryBytes;
            CPUQuota = "${toString a.resources.cpuPercent}%";
            TasksMax = toString a.resources.tasks;
          };
        })
        agents;
    })
  ]);
}
