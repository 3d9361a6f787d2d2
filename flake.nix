{
  description = "hyperhive: a Matrix-native hive of LLM agents";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        hyperhive = pkgs.callPackage ./nix/package.nix { };
        default = hyperhive;
      });

      # services.hyperhive (docs/nixos.md). Its package defaults to this flake's.
      nixosModules = rec {
        hyperhive = { pkgs, lib, ... }: {
          imports = [ ./nix/module.nix ];
          services.hyperhive.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.hyperhive;
        };
        default = hyperhive;
      };

      # The NixOS VM test (nix/tests/vm.nix): needs KVM; not run on the project's machines yet.
      checks.x86_64-linux.vm = import ./nix/tests/vm.nix {
        pkgs = nixpkgs.legacyPackages.x86_64-linux;
        module = self.nixosModules.hyperhive;
      };

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.hyperhive ];
          packages = with pkgs; [ cargo-nextest clippy rustfmt python3 bubblewrap ];
        };
      });
    };
}
