//! `deploy/` checked by the real tools, over the real files: hadolint on the Dockerfile,
//! kubernetes-validate (strict) on every Kubernetes manifest, `systemd-analyze verify` on both
//! systemd units. Each check is also fed a broken copy from a temp dir and must reject it, so a
//! check that silently passes everything would fail here. (promtool checks /metrics in
//! metrics.rs; the example configs pass check-config in the aggregator's and sidecar's cli.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

use flumewatch_e2e::{venv_tool, workspace_binary};
use flumewatch_testkit::TempDir;

fn deploy(path: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repo holds tests/");
    repo.join("deploy").join(path)
}

/// What a tool said and whether it exited 0.
struct Verdict {
    ok: bool,
    text: String,
}

fn run(command: &mut Command) -> Verdict {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} runs (tests/run.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --no-capture, and with any failure: what the tool printed is the evidence.
    println!("{command:?} → {}\n{text}", out.status);
    Verdict {
        ok: out.status.success(),
        text,
    }
}

fn hadolint(dockerfile: &Path) -> Verdict {
    // The default threshold (info) already fails on every finding; said here so a changed
    // default cannot relax the check.
    run(Command::new(venv_tool("HADOLINT", "hadolint"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(dockerfile))
}

fn kubernetes_validate(manifests: &[PathBuf]) -> Verdict {
    // --strict rejects fields the schema does not know: a misspelt key (readinesProbe) would
    // otherwise be dropped silently by the API server and the probe never set.
    run(
        Command::new(venv_tool("KUBERNETES_VALIDATE", "kubernetes-validate"))
            .arg("--strict")
            .args(manifests),
    )
}

/// `systemd-analyze verify`, failing on any diagnostic about our units: verify exits 0 on
/// unknown keys and unparsable values (it only warns and ignores them, as systemd would at boot),
/// so its exit status alone would let a misspelt hardening option through.
fn systemd_verify(units: &[PathBuf]) -> Verdict {
    let analyze = std::env::var_os("SYSTEMD_ANALYZE").unwrap_or_else(|| "systemd-analyze".into());
    let verdict = run(Command::new(analyze).arg("verify").args(units));
    // Lines about other units (the targets ours name) say nothing about our files.
    let ours: Vec<&str> = verdict
        .text
        .lines()
        .filter(|line| line.contains("flumewatch-"))
        .collect();
    Verdict {
        ok: verdict.ok && ours.is_empty(),
        text: verdict.text.clone(),
    }
}

/// Copies of both units in `dir` whose commands are the binaries this build made, so verify
/// checks what it can only check on a host with flumewatch installed: that every ExecStart and
/// ExecStartPre names an executable. The units are otherwise unchanged.
fn units_with_built_binaries(dir: &TempDir) -> Vec<PathBuf> {
    [
        "flumewatch-aggregator.service",
        "flumewatch-sidecar.service",
    ]
    .into_iter()
    .map(|name| {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{name}"))).unwrap();
        let mut patched = text.clone();
        for binary in ["flumewatch-aggregator", "flumewatch-sidecar"] {
            let installed = format!("/usr/local/bin/{binary}");
            let built = workspace_binary(binary);
            patched = patched.replace(&installed, built.to_str().expect("UTF-8 path"));
        }
        assert_ne!(patched, text, "{name} runs a binary from /usr/local/bin");
        // The name must stay the unit's: verify derives the unit name from the file name.
        dir.write(name, patched)
    })
    .collect()
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    let verdict = hadolint(&deploy("Dockerfile"));
    assert!(verdict.ok, "hadolint: {}", verdict.text);
}

#[test]
fn hadolint_rejects_an_unpinned_image_and_apt_install() {
    let dir = TempDir::new("deploy-dockerfile");
    let broken = dir.write(
        "Dockerfile",
        "FROM debian\nRUN apt-get update && apt-get install curl\n",
    );
    let verdict = hadolint(&broken);
    assert!(!verdict.ok, "hadolint passed a broken Dockerfile");
    // DL3006: image without a tag; DL3008/DL3015: unpinned, with recommends; DL3014: no -y.
    for rule in ["DL3006", "DL3008", "DL3014", "DL3015"] {
        assert!(
            verdict.text.contains(rule),
            "{rule} missing: {}",
            verdict.text
        );
    }
}

#[test]
fn kubernetes_validate_accepts_every_manifest() {
    let files = manifests();
    assert_eq!(files.len(), 4, "{files:?}");
    let verdict = kubernetes_validate(&files);
    assert!(verdict.ok, "kubernetes-validate: {}", verdict.text);
    // Every resource of every file was checked: 4 in aggregator.yaml, 5 in aggregator-ha.yaml,
    // 1 in each of the others.
    assert_eq!(
        verdict.text.matches(" passed for resource ").count(),
        11,
        "{}",
        verdict.text
    );
}

#[test]
fn kubernetes_validate_rejects_broken_manifests() {
    let dir = TempDir::new("deploy-k8s");
    // Two apply-time mistakes people make, one per file (the tool reports the first problem
    // of each resource): a misspelt probe, which only --strict catches, and a port as text.
    let broken = |file: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(deploy(&format!("kubernetes/{file}"))).unwrap();
        assert!(text.contains(from), "{file} has {from}");
        dir.write(file, text.replace(from, to))
    };
    let files = [
        broken("aggregator.yaml", "readinessProbe:", "readinesProbe:"),
        broken(
            "sidecar-daemonset.yaml",
            "runAsUser: 65532",
            "runAsUser: \"65532\"",
        ),
    ];
    let verdict = kubernetes_validate(&files);
    assert!(!verdict.ok, "kubernetes-validate passed broken manifests");
    let errors: Vec<&str> = verdict
        .text
        .lines()
        .filter(|line| line.starts_with("ERROR ") && line.contains(" did not validate "))
        .collect();
    assert_eq!(errors.len(), 2, "{}", verdict.text);
    assert!(
        errors[0].contains("deployment/flumewatch-aggregator")
            && errors[0].contains("'readinesProbe' was unexpected"),
        "{}",
        verdict.text
    );
    assert!(
        errors[1].contains("daemonset/flumewatch-sidecar")
            && errors[1].contains("'65532' is not of type 'integer'"),
        "{}",
        verdict.text
    );
}

#[test]
fn systemd_analyze_verifies_both_units() {
    let dir = TempDir::new("deploy-systemd");
    let units = units_with_built_binaries(&dir);
    let verdict = systemd_verify(&units);
    assert!(verdict.ok, "systemd-analyze verify: {}", verdict.text);
}

#[test]
fn systemd_analyze_rejects_a_misspelt_option_and_a_missing_binary() {
    let dir = TempDir::new("deploy-systemd-broken");
    let units = units_with_built_binaries(&dir);
    let sidecar = &units[1];
    let text = std::fs::read_to_string(sidecar).unwrap();
    std::fs::write(
        sidecar,
        text.replace("Restart=always", "Restart=allways")
            .replace("NoNewPrivileges=", "NoNewPrivilege="),
    )
    .unwrap();
    let verdict = systemd_verify(&units);
    assert!(!verdict.ok, "verify passed a broken unit");
    assert!(verdict.text.contains("allways"), "{}", verdict.text);
    assert!(verdict.text.contains("NoNewPrivilege'"), "{}", verdict.text);

    // The unit as shipped, where its binary is not installed (the test machines): verify names
    // the missing command — why the check above runs copies pointing at the built binaries.
    if !Path::new("/usr/local/bin/flumewatch-aggregator").exists() {
        let verdict = systemd_verify(&[deploy("systemd/flumewatch-aggregator.service")]);
        assert!(!verdict.ok, "verify passed a unit whose binary is missing");
        assert!(
            verdict
                .text
                .contains("/usr/local/bin/flumewatch-aggregator is not executable"),
            "{}",
            verdict.text
        );
    }
}
