//! The command line's own outputs: shell completions and the man page
//! (generated from the clap definitions), no progress bar when stderr is
//! not a terminal, and `autostart`'s exit codes.

mod common;

use common::{temp_dir, tiny_model};

use common::run_genrepi as run;

#[test]
fn completions_and_man_page_come_from_the_definitions() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, stderr) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for word in ["listen", "replay", "input", "speed", "max-memory"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, page, _) = run(&["manpage"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH genrepi 1"), "{page}");
    assert!(page.contains("listen"), "{page}");
    let (code, _, stderr) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let dir = temp_dir("cli-progress");
    std::fs::create_dir_all(dir.join("rock")).unwrap();
    common::noise_wav(&dir.join("rock"), "a.wav", 4.0, 5);
    let model = tiny_model();
    let (code, stdout, stderr) = run(&[
        "--model",
        model.to_str().unwrap(),
        "eval",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("clip accuracy"), "{stdout}");
    // Only tract's note under qemu-user (its /proc/cpuinfo has no Features
    // line; never on a Pi) may be there.
    let rest: Vec<&str> = stderr
        .lines()
        .filter(|l| !(l.contains("tract_linalg::arm64") && l.contains("/proc/cpuinfo")))
        .collect();
    assert!(rest.is_empty(), "nothing on a piped stderr: {stderr:?}");
}

/// `genrepi autostart`, the kiosk unit's `ExecCondition=`: 0 starts the
/// service, 1 skips it quietly (the packaged config), 255 fails it with one
/// error line naming the file.
#[test]
fn autostart_follows_the_config_file() {
    let dir = temp_dir("cli-autostart");
    let config = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let on = config("on.toml", "autostart = true\nhop = \"1.0\"\n");
    let (code, stdout, stderr) = run(&["autostart", "--config", &on]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let packaged = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/genrepi.toml");
    let (code, stdout, _) = run(&["autostart", "--config", packaged]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("autostart = true"), "{stdout}");
    let absent = config("absent.toml", "hop = \"1.0\"\n");
    assert_eq!(run(&["autostart", "--config", &absent]).0, 1);
    let bad = config("bad.toml", "autostart = \"sometimes\"\n");
    let missing = dir.join("missing.toml");
    for path in [bad.as_str(), missing.to_str().unwrap()] {
        let (code, _, stderr) = run(&["autostart", "--config", path]);
        assert_eq!(code, 255, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(path), "{stderr}");
    }
}
