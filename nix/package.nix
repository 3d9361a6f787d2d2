# The hyperhive package: the `hive` binary plus the bots and Synapse templates it ships with.
{ lib, rustPlatform, pkg-config, makeWrapper, git, bubblewrap }:

rustPlatform.buildRustPackage {
  pname = "hyperhive";
  version = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.version;
  src = lib.cleanSource ./..;
  cargoLock.lockFile = ../Cargo.lock;
  nativeBuildInputs = [ pkg-config makeWrapper ];
  # The unit tests of the versioned config run real git.
  nativeCheckInputs = [ git ];
  # Integration tests provision Synapse from PyPI: not possible in the Nix sandbox.
  cargoTestFlags = [ "--lib" ];
  postInstall = ''
    mkdir -p $out/share/hyperhive
    cp -r bots synapse-config $out/share/hyperhive/
    # Agents' config is versioned with git; the bwrap runtime needs bubblewrap.
    wrapProgram $out/bin/hive --prefix PATH : ${lib.makeBinPath [ git bubblewrap ]}
  '';
  meta = {
    description = "A Matrix-native hive of LLM agents";
    license = lib.licenses.asl20;
    mainProgram = "hive";
  };
}
