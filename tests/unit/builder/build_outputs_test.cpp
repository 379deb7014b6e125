// The -o outputs of a build as the library parses them (builder/
// build_outputs.hpp): short forms, type=registry, the errors a user gets,
// which outputs are one file, and the names and pushes of type=image.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "builder/build_outputs.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;

namespace {

Output parsed(const std::string& spec) {
  auto o = parse_output(spec);
  REQUIRE(o);
  return *o;
}

image::Reference ref(const std::string& s) {
  auto r = image::parse_reference(s);
  REQUIRE(r);
  return *r;
}

std::vector<std::string> strs(const std::vector<image::Reference>& refs) {
  std::vector<std::string> out;
  for (const auto& r : refs) {
    out.push_back(r.str());
  }
  return out;
}

}  // namespace

TEST_CASE("outputs: short forms and key=value specs", "[builder][outputs]") {
  Output tar = parsed("-");
  CHECK(tar.type == "tar");
  CHECK(tar.attrs.at("dest") == "-");
  Output docker = parsed("out/img.tar");
  CHECK(docker.type == "docker");
  CHECK(docker.attrs.at("dest") == "out/img.tar");
  Output local = parsed("out/dir");
  CHECK(local.type == "local");
  CHECK(local.attrs.at("dest") == "out/dir");

  Output oci = parsed("type=oci, DEST=x.tar,tar=false");
  CHECK(oci.type == "oci");
  CHECK(oci.attrs.at("dest") == "x.tar");  // keys are trimmed and lower-cased
  CHECK(oci.attrs.at("tar") == "false");
  CHECK_FALSE(writes_file(oci));  // an OCI layout directory
  CHECK(writes_file(parsed("type=oci,dest=x.tar")));
  CHECK(writes_file(tar));
  CHECK(writes_file(docker));
  CHECK_FALSE(writes_file(local));

  Output registry = parsed("type=registry,name=r.example/a:b");
  CHECK(registry.type == "image");
  CHECK(attr_true(registry, "push"));
  CHECK_FALSE(attr_true(registry, "registry.insecure"));
}

TEST_CASE("outputs: bad specs are refused with the user's words", "[builder][outputs]") {
  auto unknown = parse_output("type=zip,dest=x");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::invalid_argument);
  CHECK(unknown.error().message ==
        "invalid output \"type=zip,dest=x\": unsupported type \"zip\" (docker, oci, local, tar, image, registry)");
  auto no_dest = parse_output("type=local");
  REQUIRE_FALSE(no_dest);
  CHECK(no_dest.error().message == "invalid output \"type=local\": dest= is required for type=local");
  CHECK(parse_output("type=image"));  // image needs no dest

  auto bad_level = output_compression(parsed("type=oci,dest=x,compression=zstd,compression-level=99"), true);
  REQUIRE_FALSE(bad_level);
  CHECK(bad_level.error().message.starts_with("invalid output oci: "));
  auto none = output_compression(parsed("type=docker,dest=x"), false);
  REQUIRE(none);
  CHECK_FALSE(*none);  // docker writes the layers as stored unless told
  auto gzip = output_compression(parsed("type=oci,dest=x"), true);
  REQUIRE(gzip);
  REQUIRE(*gzip);
  CHECK((*gzip)->key().starts_with("gzip"));
}

TEST_CASE("outputs: type=image names the image and pushes only with push=true", "[builder][outputs]") {
  std::vector<image::Reference> tags{ref("app:1")};
  auto outs = image_outputs({parsed("type=image,name=r.example/app:2"), parsed("type=image"),
                             parsed("type=registry,name=r.example/app:3,registry.insecure=true")},
                            tags);
  REQUIRE(outs);
  CHECK(strs(outs->names) ==
        std::vector<std::string>{"r.example/app:2", "docker.io/library/app:1", "r.example/app:3"});
  REQUIRE(outs->pushes.size() == 1);
  CHECK(strs(outs->pushes[0].names) == std::vector<std::string>{"r.example/app:3"});
  CHECK(outs->pushes[0].insecure);

  auto untagged = image_outputs({parsed("type=registry")}, {});
  REQUIRE_FALSE(untagged);
  CHECK(untagged.error().message == "tag is needed when pushing to registry");
  auto bad_name = image_outputs({parsed("type=image,name=UPPER:x")}, {});
  REQUIRE_FALSE(bad_name);
  CHECK(bad_name.error().message.starts_with("invalid output name \"UPPER:x\": "));
}
