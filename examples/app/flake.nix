{
  # An app flake as users write it: nixpkgs' dockerTools builds the image. enbi builds
  # packages.<system>.image for the system of the node that needs it, and imports the result under the
  # exact image reference the manifest names (the tag below is only Nix's default).
  description = "hello, as an OCI image built by enbi";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      packages = forAll (pkgs: {
        # A script that streams the image tar to stdout: enbi pipes it into containerd, no copy on disk.
        image = pkgs.dockerTools.streamLayeredImage {
          name = "registry.local/hello";
          tag = self.shortRev or "dirty";
          contents = [ pkgs.hello ];
          config.Cmd = [ "/bin/hello" ];
        };
        # The gzipped-tarball variant works too.
        image-tarball = pkgs.dockerTools.buildLayeredImage {
          name = "registry.local/hello";
          contents = [ pkgs.hello ];
          config.Cmd = [ "/bin/hello" ];
        };
      });
    };
}
