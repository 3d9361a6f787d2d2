# The hive's agents as data, for the NixOS module: a PURE function (builtins only, no nixpkgs,
# no lib). Each agent.toml is read with builtins.fromTOML: data only, agent-written Nix is never
# evaluated. Names, container names, uid bases and sizes follow the Rust code exactly:
#   src/agent_spec/name.rs            (AgentName::parse)
#   src/agent_spec/resources.rs       (parse_bytes, parse_cpu, validate, over)
#   src/runtime/nixos_container.rs    (container_name, uid_base)
# tests/nix.rs compares this file's answer with the Rust reading of bots/.
{ bots ? null # a directory of <name>/agent.toml
, agents ? { } # inline: name -> attrset as agent.toml would hold
, defaults ? { memory = "2G"; cpu = "100%"; tasks = 512; }
}:
let
  reserved = [ "hive" "operator" "c0re" "core" "admin" ];

  checkName = name:
    if builtins.stringLength name > 32 then
      throw "hyperhive agent ${builtins.toJSON name}: the name is longer than 32 bytes"
    else if builtins.match "[a-z][a-z0-9_-]*" name == null then
      throw "hyperhive agent ${builtins.toJSON name}: a name is a lowercase ascii letter, then lowercase a-z, 0-9, '_' or '-'"
    else if builtins.elem name reserved then
      throw "hyperhive agent ${builtins.toJSON name}: the name is reserved for the hive itself"
    else name;

  hexDigit = c: {
    "0" = 0; "1" = 1; "2" = 2; "3" = 3; "4" = 4; "5" = 5; "6" = 6; "7" = 7; "8" = 8; "9" = 9;
    "a" = 10; "b" = 11; "c" = 12; "d" = 13; "e" = 14; "f" = 15;
  }.${c};
  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);
  fromBase = base: s: builtins.foldl' (acc: c: acc * base + hexDigit c) 0 (chars s);

  digest = name: builtins.hashString "sha256" name;
  containerName = name: "hh-${builtins.substring 0 8 (digest name)}";
  uidBase = name:
    let h = fromBase 16 (builtins.substring 0 4 (digest name));
    in 1073741824 + (h - (h / 16382) * 16382) * 65536;

  trim = s:
    let m = builtins.match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
    in if m == null then "" else builtins.head m;
  isDigits = s: s != "" && builtins.match "[0-9]+" s != null;
  # Whole numbers of at most 15 digits: no overflow of Nix's 64-bit integers.
  decimal = s: if builtins.stringLength s > 15 then null else fromBase 10 s;

  minMemory = 32 * 1048576;
  maxBytes = 1125899906842624; # 1 << 50
  shifts = { K = 1024; M = 1048576; G = 1073741824; T = 1099511627776; };

  bad = agent: key: msg: throw "hyperhive agent ${agent}: ${key}: ${msg}";

  parseBytes = agent: key: raw:
    let
      t = trim raw;
      len = builtins.stringLength t;
      last = if len == 0 then "" else builtins.substring (len - 1) 1 t;
      hasUnit = builtins.match "[A-Za-z]" last != null;
      unit = {
        k = "K"; m = "M"; g = "G"; t = "T"; K = "K"; M = "M"; G = "G"; T = "T";
      }.${last} or null;
      digits = if hasUnit then builtins.substring 0 (len - 1) t else t;
      mult = if hasUnit then shifts.${unit} else 1;
      n = decimal digits;
    in
    if !builtins.isString raw then bad agent key "${builtins.toJSON raw} is not a size: write a string (\"512M\")"
    else if hasUnit && unit == null then bad agent key "${builtins.toJSON raw}: the unit must be K, M, G or T"
    else if !isDigits digits then bad agent key "${builtins.toJSON raw} is not a size: write bytes, or a whole number with K, M, G or T (\"512M\")"
    else if n == null || n > maxBytes / mult then bad agent key "${builtins.toJSON raw} is too large"
    else if n * mult < minMemory then bad agent key "${toString (n * mult)} bytes is less than the 32 MiB an agent needs"
    else n * mult;

  parseCpu = agent: key: raw:
    let
      t = if builtins.isString raw then trim raw else "";
      m = builtins.match "(.*)%" t;
      digits = if m == null then "" else builtins.head m;
      n = decimal digits;
    in
    if m == null then bad agent key "${builtins.toJSON raw} is not a CPU share: write a percentage of one core (\"100%\", \"250%\")"
    else if !isDigits digits || n == null || n < 1 || n > 100000 then bad agent key "${builtins.toJSON raw}: the share must be a whole percentage from 1% to 100000%"
    else n;

  parseTasks = agent: key: raw:
    if !builtins.isInt raw || raw < 0 || raw > 4294967295 then bad agent key "${builtins.toJSON raw} is not a number of tasks"
    else if raw < 16 then bad agent key "${toString raw} is fewer than the 16 tasks a harness needs"
    else raw;

  # [runtime.resources]-style defaults, then an agent's [resources] over them.
  base = {
    memoryBytes = parseBytes "(defaults)" "runtime.resources.memory" (defaults.memory or "2G");
    cpuPercent = parseCpu "(defaults)" "runtime.resources.cpu" (defaults.cpu or "100%");
    tasks = parseTasks "(defaults)" "runtime.resources.tasks" (defaults.tasks or 512);
  };
  resourcesOf = name: spec:
    let
      r = spec.resources or { };
      unknown = builtins.filter (k: !builtins.elem k [ "memory" "cpu" "tasks" ]) (builtins.attrNames r);
    in
    if !builtins.isAttrs r then bad name "resources" "must be a table"
    else if unknown != [ ] then bad name "resources.${builtins.head unknown}" "unknown key (known: memory, cpu, tasks)"
    else {
      memoryBytes = if r ? memory then parseBytes name "resources.memory" r.memory else base.memoryBytes;
      cpuPercent = if r ? cpu then parseCpu name "resources.cpu" r.cpu else base.cpuPercent;
      tasks = if r ? tasks then parseTasks name "resources.tasks" r.tasks else base.tasks;
    };

  fromDir =
    if bots == null then { }
    else
      let
        entries = builtins.readDir bots;
        dirs = builtins.filter
          (n: entries.${n} == "directory" && builtins.pathExists (bots + "/${n}/agent.toml"))
          (builtins.attrNames entries);
      in
      builtins.listToAttrs (map
        (n: {
          name = n;
          value = builtins.fromTOML (builtins.readFile (bots + "/${checkName n}/agent.toml"));
        })
        dirs);

  all = fromDir // agents;

  one = name: spec:
    let n = checkName name;
    in {
      name = n;
      container = containerName n;
      uidBase = uidBase n;
      resources = resourcesOf n spec;
      inherit spec;
    };
in
builtins.mapAttrs one all
