//! Every example of `examples/`, built plainly and varied: identical.

use crate::support::project::examples;
use crate::variation::{identical_under_variation, SPECS};

#[test]
fn every_example_is_built_under_variation() {
    let listed: Vec<&str> = SPECS.iter().map(|s| s.example).collect();
    assert_eq!(
        examples(),
        listed,
        "an example is missing from this test's SPECS (or one listed is gone)"
    );
}

#[test]
fn the_busybox_example_is_identical_under_variation() {
    identical_under_variation("busybox-hello");
}

#[test]
fn the_c_example_is_identical_under_variation() {
    identical_under_variation("c-hello");
}

#[test]
fn the_go_example_is_identical_under_variation_for_amd64_and_arm64() {
    identical_under_variation("go-hello");
}

#[test]
fn the_http_example_is_identical_under_variation() {
    identical_under_variation("http-hello");
}

#[test]
fn the_pipeline_example_is_identical_under_variation() {
    identical_under_variation("pipeline");
}

#[test]
fn the_zig_example_is_identical_under_variation_for_x86_64_and_aarch64() {
    identical_under_variation("zig-hello");
}
