//! One contract for every sandbox store: the same sequence of inserts, lookups, updates,
//! deletes and a damaged record, run against SQLite (this machine's store) and DynamoDB (the
//! team's, in the moto-based AWS simulator), so the two cannot drift apart.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use km_aws::{AwsSettings, DynamoStore, ensure_table};
use km_core::id::{Alias, SandboxId};
use km_core::record::{
    Creator, LockHolder, NewSandbox, Resources, SandboxStore, Status, StoreError,
};
use km_local::store::SqliteStore;

fn new(id: &SandboxId, alias: Option<&str>) -> NewSandbox {
    NewSandbox {
        id: id.clone(),
        alias: alias.map(|a| a.parse().unwrap()),
        profile: "default".into(),
        profile_path: "/profiles/default.yaml".into(),
        platform: "local".into(),
        vscode_enabled: true,
        created_at: 1_700_000_000,
    }
}

fn id(text: &str) -> SandboxId {
    text.parse().unwrap()
}

/// What every store must do. `damage(id, field, text)` writes `text` into one field of a
/// record in the store's own backend, as a bug or another program might.
fn contract(store: &dyn SandboxStore, damage: &dyn Fn(&SandboxId, &str, &str)) {
    let (a, b, c) = (id("sb-0000000a"), id("sb-0000000b"), id("sb-0000000c"));
    let web: Alias = "web".parse().unwrap();

    let first = store.insert(&new(&a, Some("web"))).unwrap();
    assert_eq!(first.status, Status::Starting);
    assert!(!first.locked && first.lock_holder.is_none());
    assert_eq!(first.resources, Resources::default());
    assert_eq!(store.get(&a).unwrap().as_ref(), Some(&first));
    assert_eq!(store.get_by_alias(&web).unwrap().as_ref(), Some(&first));
    assert_eq!(
        store.get_by_number(first.number).unwrap().as_ref(),
        Some(&first)
    );

    // A taken alias is refused whole: nothing of the second record is written.
    assert!(matches!(
        store.insert(&new(&b, Some("web"))),
        Err(StoreError::AliasTaken(taken)) if taken == web
    ));
    assert_eq!(store.get(&b).unwrap(), None);
    assert!(matches!(
        store.insert(&new(&a, None)),
        Err(StoreError::Exists(existing)) if existing == a
    ));
    let second = store.insert(&new(&b, None)).unwrap();
    assert!(second.number > first.number);

    store.set_status(&a, Status::Running).unwrap();
    let holder = LockHolder {
        by: "alice@laptop".into(),
        since: 1_700_000_100,
    };
    store.set_locked(&a, Some(&holder)).unwrap();
    store.set_key_fingerprint(&a, Some("SHA256:abc")).unwrap();
    store
        .set_resources(
            &a,
            &Resources::placed(
                Some(Creator::Until { until_ms: 7 }),
                &serde_json::json!({ "instance_id": "i-0123" }),
            ),
        )
        .unwrap();
    let changed = store.get(&a).unwrap().unwrap();
    assert_eq!(changed.status, Status::Running);
    assert!(changed.locked);
    assert_eq!(changed.lock_holder, Some(holder));
    assert_eq!(changed.key_fingerprint.as_deref(), Some("SHA256:abc"));
    assert_eq!(
        changed.resources.placement(),
        serde_json::json!({ "instance_id": "i-0123" })
    );
    assert_eq!(
        changed.resources.creator,
        Some(Creator::Until { until_ms: 7 })
    );
    store.set_locked(&a, None).unwrap();
    let unlocked = store.get(&a).unwrap().unwrap();
    assert!(!unlocked.locked && unlocked.lock_holder.is_none());

    // Changing what is not there says so.
    assert!(matches!(
        store.set_status(&c, Status::Running),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_locked(&c, None),
        Err(StoreError::NotFound { .. })
    ));

    // Deleting frees the alias; numbers are never handed out twice.
    store.delete(&a).unwrap();
    assert_eq!(store.get(&a).unwrap(), None);
    assert_eq!(store.get_by_alias(&web).unwrap(), None);
    assert_eq!(store.get_by_number(first.number).unwrap(), None);
    let third = store.insert(&new(&c, Some("web"))).unwrap();
    assert!(third.number > second.number);
    let listed: Vec<SandboxId> = store.list().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![b.clone(), c.clone()], "by number");

    // A record the store cannot read fails the read: it is never silently dropped from the
    // list (a sandbox nobody sees still runs) nor taken for absent.
    damage(&b, "status", "sideways");
    let listing = store.list();
    assert!(
        matches!(listing, Err(StoreError::Backend(_))),
        "{listing:?}"
    );
    assert!(matches!(store.get(&b), Err(StoreError::Backend(_))));
    assert!(
        store.get(&c).unwrap().is_some(),
        "other records stay readable one by one"
    );
    // Resources that are not JSON make the record unreadable too, never one that seems to
    // name no instance.
    damage(&c, "resources", "{\"instance_id\": ");
    assert!(matches!(store.get(&c), Err(StoreError::Backend(_))));
}

#[test]
fn sqlite_and_dynamodb_keep_the_same_contract() {
    // SQLite.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let sqlite = SqliteStore::open(&path).unwrap();
    contract(&sqlite, &|id, field, text| {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                &format!("UPDATE sandboxes SET {field} = ?1 WHERE id = ?2"),
                [text, id.as_str()],
            )
            .unwrap();
    });

    // DynamoDB, in the simulator.
    let sim = Simulator::start();
    // SAFETY: this is the only test in its binary, and no other thread of it runs now:
    // nothing reads the environment while it changes.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &sim.endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    let settings = AwsSettings {
        region: "us-east-1".into(),
        table: "km-contract".into(),
        instance_type: "t3.small".into(),
        subnet: None,
        security_group: None,
        instance_profile: None,
    };
    ensure_table(&settings).unwrap();
    let dynamo = DynamoStore::open(&settings).unwrap();
    contract(&dynamo, &|id, field, text| {
        let script = format!(
            "import boto3\n\
             db = boto3.client('dynamodb', region_name='us-east-1', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             db.update_item(TableName='km-contract', Key={{'pk': {{'S': 'sandbox#{id}'}}}}, UpdateExpression='SET #s = :v', ExpressionAttributeNames={{'#s': {field:?}}}, ExpressionAttributeValues={{':v': {{'S': {text:?}}}}})\n",
            sim.endpoint
        );
        let status = Command::new("python3")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap();
        assert!(status.success());
    });
}

/// The repository's AWS simulator, held open for the test and ended by its PID.
struct Simulator {
    child: Child,
    endpoint: String,
    _scratch: tempfile::TempDir,
}

impl Simulator {
    fn start() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let written = scratch.path().join("endpoint");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/aws-sim");
        let child = Command::new(script)
            .args([
                "--",
                "sh",
                "-c",
                "printf '%s' \"$AWS_ENDPOINT_URL\" > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; exec cat > /dev/null",
            ])
            .arg(&written)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("scripts/aws-sim (python3 with moto[server])");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !written.exists() {
            assert!(Instant::now() < deadline, "aws-sim did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut endpoint = String::new();
        std::fs::File::open(&written)
            .unwrap()
            .read_to_string(&mut endpoint)
            .unwrap();
        Self {
            child,
            endpoint,
            _scratch: scratch,
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Closing its command's stdin ends the simulator; its PID is the backstop.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
