//! The generated Dockerfile's build stage, run as Docker would run it, without
//! Docker (no engine on the test machines): its `RUN` commands, in order, with
//! `sh -c`, in a clean copy of a freshly generated project (`COPY . .` into
//! `WORKDIR`). The default scaffold enables the etcd backend, whose client
//! compiles etcd's protos with protoc: the stage must install it.
//!
//! Two departures, both said here and in docs/DEPLOYMENT.md: the release
//! profile is built without optimisation (`CARGO_PROFILE_RELEASE_OPT_LEVEL=0`,
//! the same commands at a fraction of the CI time), and the `apt-get` line runs
//! only as root (as in the image; elsewhere protoc must already be installed).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The `RUN` commands of the first stage, continuation lines joined.
fn build_stage_runs(dockerfile: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut runs = Vec::new();
    let mut stages = 0;
    for line in joined {
        if line.starts_with("FROM ") {
            stages += 1;
            if stages == 2 {
                break;
            }
        } else if let Some(cmd) = line.strip_prefix("RUN ") {
            runs.push(cmd.trim().to_owned());
        }
    }
    runs
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn the_build_stage_builds_a_fresh_project() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("boxed");
    let out = octopus(&["new", "boxed", "--path", generated.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dockerfile = std::fs::read_to_string(generated.join("Dockerfile")).unwrap();
    let runs = build_stage_runs(&dockerfile);
    assert!(
        runs.iter().any(|r| r.contains("protobuf-compiler")),
        "the etcd scaffold's build stage installs protoc: {runs:?}"
    );
    assert!(runs.iter().any(|r| r.contains("cargo build --release")), "{runs:?}");

    // COPY . . into WORKDIR /src: a clean directory with the project's files
    // (what .dockerignore keeps: nothing is built yet).
    let src = tmp.path().join("src");
    copy_dir(&generated, &src);
    for run in runs {
        if run.starts_with("apt-get") && !is_root() {
            assert!(
                Command::new("protoc").arg("--version").output().is_ok(),
                "not root: protoc must already be installed"
            );
            continue;
        }
        let status = Command::new("sh")
            .args(["-c", &run])
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", src.join("target"))
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .unwrap();
        assert!(status.success(), "the build stage's `RUN {run}` failed");
    }
    assert!(
        src.join("target/release/boxed").is_file(),
        "the image's binary was built"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn build_stage_runs_join_continuations_and_skip_comments_and_other_stages() {
    let runs = build_stage_runs(
        "FROM a AS build\n# RUN not this\nRUN one \\\n  two\nWORKDIR /src\nRUN three\nFROM b\nRUN four\n",
    );
    assert_eq!(runs, ["one   two", "three"]);
}
