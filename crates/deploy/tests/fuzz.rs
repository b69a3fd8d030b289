//! Property tests of the ledger's parser: an entry read from a remote or the local mirror is
//! accepted only when every field is safe to carry into paths, commands and manifests, and
//! nothing in it can panic the reader or add a field to a Kubernetes manifest.

use deploy::kube::{KubeConfig, render};
use deploy::ledger::parse_event;
use proptest::prelude::*;

#[path = "../../engine/tests/mutate.rs"]
mod mutate;

const EVENTS: &[&str] = &[
    r#"{"schema":"slipway.ledger-event.v1","seq":7,"kind":"promote","outcome":"live","env":"production","release":{"version":"v3","image_digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","image_config":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","model_digest":"0000000000000000000000000000000000000000000000000000000000000003","serve_digest":"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e","config_digest":"c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0","git_sha":"697b83e","tags":["sha-697b83e","v1.2.0"],"files":{"model.onnx":"0000000000000000000000000000000000000000000000000000000000000003","slipway-serve":"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"}},"previous":"v2","who":"ana","at":1764590000,"approval":{"by":"ana","how":"--approve"},"smoke":[{"name":"readyz","passed":true,"detail":"200 in 3 ms"}]}"#,
    r#"{"schema":"slipway.ledger-event.v1","seq":1,"kind":"deploy","outcome":"rejected","env":"staging","release":{"version":"v1","image_digest":null,"model_digest":"0000000000000000000000000000000000000000000000000000000000000001","serve_digest":"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e","config_digest":"c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0","git_sha":"unknown","tags":[],"files":{}},"previous":null,"who":"ci","at":0,"approval":null,"smoke":[{"name":"predict","passed":false,"detail":"line one\nline two"}]}"#,
];

fn kube() -> KubeConfig {
    KubeConfig {
        namespace: "ml".into(),
        replicas: 2,
        repository: "registry.example.com/team/slipway-serve".into(),
        context: None,
        url: "https://staging.example.com".into(),
    }
}

#[test]
fn an_entry_is_refused_or_safe_to_use() {
    mutate::run("deploy: ledger entry", mutate::inputs(EVENTS), |bytes| {
        let Ok(event) = parse_event("00000007.json", &bytes) else { return Ok(false) };
        prop_assert!(deploy::names::is_version(&event.release.version));
        for name in event.release.files.keys() {
            prop_assert!(deploy::names::RELEASE_FILES.contains(&name.as_str()), "{name:?}");
        }
        // What the kubernetes target would apply: exactly the fields it writes, whatever the
        // entry held.
        let Ok(yaml) = render(&event.env, &event.release, &kube()) else {
            prop_assert!(event.release.image_digest.is_none(), "a checked release with an image renders");
            return Ok(true);
        };
        let docs: Vec<serde_json::Value> = yaml.split("---\n").map(|d| serde_norway::from_str(d).unwrap()).collect();
        prop_assert_eq!(docs.len(), 2);
        let deployment = &docs[0];
        let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        prop_assert_eq!(keys(deployment), ["apiVersion", "kind", "metadata", "spec"]);
        prop_assert_eq!(&deployment["metadata"]["name"], &serde_json::json!(format!("slipway-{}", event.env)));
        prop_assert_eq!(
            &deployment["metadata"]["labels"]["app.kubernetes.io/version"],
            &serde_json::json!(event.release.version)
        );
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        prop_assert_eq!(keys(container).len(), 7);
        let image = format!("{}@{}", kube().repository, event.release.image_digest.unwrap());
        prop_assert_eq!(&container["image"], &serde_json::json!(image));
        Ok(true)
    });
}
