# The hyperhive package: the `hive` binary plus the bots and Synapse templates it ships with.
{ lib, rustPlatform, pkg-config, python3 }:

rustPlatform.buildRustPackage {
  pname = "hyperhive";
  version = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.version;
  src = lib.cleanSource ./..;
  cargoLock.lockFile = ../Cargo.lock;
  nativeBuildInputs = [ pkg-config ];
  # Integration tests provision Synapse from PyPI: not possible in the Nix sandbox.
  cargoTestFlags = [ "--lib" ];
  postInstall = ''
    mkdir -p $out/share/hyperhive
    cp -r bots synapse-config $out/share/hyperhive/
  '';
  meta = {
    description = "A Matrix-native hive of LLM agents";
    license = lib.licenses.asl20;
    mainProgram = "hive";
  };
}
