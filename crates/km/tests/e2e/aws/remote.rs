//! `km create --remote` and `km destroy --remote` on AWS: the requests travel to the management
//! Lambda function that `km init --aws --sidecars` deployed, which the simulator runs as Lambda
//! runs a `provided.al2023` function (this very km binary, started as `bootstrap`).

use std::process::Stdio;
use std::time::Duration;

use super::{Aws, table_keys};
use crate::support::{repo_profile, stdout_of, succeeds, wait_until};

/// The platform's one-time setup (a bucket and a function whose invocations may run
/// `timeout` seconds), then `km init --aws --sidecars` deploying this km to it.
fn with_manager(aws: &Aws, timeout: u32) {
    let setup = aws.boto3(
        "us-east-1",
        &format!(
            "import io, zipfile\n\
             kw = dict(region_name='us-east-1', endpoint_url=ec2.meta.endpoint_url, aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             boto3.client('s3', **kw).create_bucket(Bucket='km-artifacts')\n\
             code = io.BytesIO(); zipfile.ZipFile(code, 'w').writestr('bootstrap', '#!/bin/sh\\n')\n\
             boto3.client('lambda', **kw).create_function(FunctionName='km-manager', Runtime='provided.al2023', Handler='bootstrap', Role='arn:aws:iam::123456789012:role/km-sandbox', Code={{'ZipFile': code.getvalue()}}, Timeout={timeout})\n\
             print('ok')\n"
        ),
    );
    assert_eq!(setup.trim(), "ok");
    sidecars(aws);
}

/// `km init --aws --sidecars` for this operator (the function and bucket exist).
fn sidecars(aws: &Aws) {
    aws.ok(&[
        "init",
        "--aws",
        "--region",
        "us-east-1",
        "--instance-profile",
        &aws.sim.instance_profile,
        "--sidecars",
        "--artifact-bucket",
        "km-artifacts",
    ]);
}

fn request_items(aws: &Aws) -> Vec<String> {
    table_keys(aws)
        .into_iter()
        .filter(|k| k.starts_with("request#"))
        .collect()
}

/// Instances that are not terminated.
fn live_instances(aws: &Aws) -> String {
    aws.boto3(
        "us-east-1",
        "print(sum(1 for r in ec2.describe_instances()['Reservations'] for i in r['Instances'] if i['State']['Name'] != 'terminated'))",
    )
    .trim()
    .to_owned()
}

fn manager_log(aws: &Aws) -> String {
    std::fs::read_to_string(aws.sim.dir.join("lambda/km-manager.log")).unwrap_or_default()
}

/// Nothing of a failed remote create is left: no record, no instance, no request item, no key.
fn assert_nothing_left(aws: &Aws) {
    assert!(aws.list().is_empty(), "{:?}", aws.list());
    assert_eq!(live_instances(aws), "0");
    assert!(request_items(aws).is_empty(), "{:?}", request_items(aws));
    let keys: Vec<_> = std::fs::read_dir(aws.env.home().join(".km/keys"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn the_vscode_workflow_runs_with_remote_through_the_lambda_manager() {
    let aws = Aws::new();
    with_manager(&aws, 120);
    let profile = repo_profile("ec2");
    let output = aws
        .command(&[
            "create",
            profile.to_str().unwrap(),
            "--remote",
            "--alias",
            "remote-dev",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}\n{}", manager_log(&aws));
    assert!(
        said.contains("handed to Lambda function km-manager in us-east-1")
            && said.contains("created by the management component"),
        "{said}"
    );
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let listed = aws.list();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["alias"], "remote-dev");
    assert_eq!(listed[0]["status"], "running");
    let tags = &aws.describe("us-east-1", &id)[0];
    assert!(
        super::decode(tags["userdata"].as_str().unwrap()).contains(
            &std::fs::read_to_string(aws.env.key(&id).with_extension("pub"))
                .unwrap()
                .trim()
                .to_owned()
        ),
        "the instance was launched with the operator's public key"
    );
    assert!(
        request_items(&aws).is_empty(),
        "the ended request was removed"
    );
    let log = manager_log(&aws);
    assert!(
        log.contains("START RequestId") && log.contains("(response)"),
        "{log}"
    );

    aws.ok(&["vscode", "start", "remote-dev", "--proxy"]);
    let host = format!("km-{id}");
    assert_eq!(
        stdout_of(aws.ssh(&host).arg("echo in-sandbox")),
        "in-sandbox\n"
    );
    let status = aws.run(&["vscode", "status", &id]);
    assert!(status.status.success(), "{status:?}");

    let said = aws
        .command(&["destroy", "remote-dev", "--remote", "--yes"])
        .output()
        .unwrap();
    assert!(said.status.success(), "{said:?}\n{}", manager_log(&aws));
    assert_eq!(aws.describe("us-east-1", &id)[0]["state"], "terminated");
    assert!(!aws.env.key(&id).exists());
    let config = std::fs::read_to_string(aws.env.home().join(".ssh/config")).unwrap();
    assert!(!config.contains(&host), "{config}");
    assert!(aws.list().is_empty());
    assert!(request_items(&aws).is_empty());
}

#[test]
fn remote_creates_that_cannot_finish_leave_nothing_behind_and_say_why() {
    let aws = Aws::new();
    with_manager(&aws, 40);
    let search = repo_profile("ec2").parent().unwrap().to_path_buf();
    let create = |profile: &std::path::Path, extra: &[(&str, &str)]| {
        let mut command = aws.command(&["create", profile.to_str().unwrap(), "--remote"]);
        command.env("KM_PROFILE_PATH", &search);
        for (name, value) in extra {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8(output.stderr).unwrap()
    };
    let ec2 = repo_profile("ec2");

    // The manager's own refusal reaches the operator in its words.
    let x86 = aws.boto3(
        "us-east-1",
        &format!(
            "ssm = boto3.client('ssm', region_name='us-east-1', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             print(ssm.get_parameter(Name='/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64')['Parameter']['Value'])\n",
            aws.sim.url
        ),
    );
    let mismatch = aws.env.home().join("mismatch.yaml");
    std::fs::write(
        &mismatch,
        format!(
            "metadata:\n  name: mismatch\nextends: ec2\nspec:\n  runtime:\n    instanceType: t4g.small\n    ami: {}\n",
            x86.trim()
        ),
    )
    .unwrap();
    let said = create(&mismatch, &[]);
    assert!(
        said.contains("the management component could not create")
            && said.contains("is built for x86_64, but instance type t4g.small runs arm64")
            && said.contains("aws logs tail /aws/lambda/km-manager"),
        "{said}"
    );
    assert_nothing_left(&aws);

    // Lambda refuses the invocation: withdrawn at once.
    aws.sim.fault("deny lambda:InvokeFunction");
    let said = create(&ec2, &[]);
    assert!(
        said.contains("did not take the request")
            && said.contains("the request was withdrawn; nothing was made")
            && said.contains("lambda:InvokeFunction"),
        "{said}"
    );
    assert_nothing_left(&aws);

    // Accepted but never run (throttled, or no environment starts): withdrawn after the wait.
    aws.sim.clear_faults();
    aws.sim.fault("lambda-unavailable");
    let said = create(&ec2, &[("KM_REMOTE_PICKUP_SECONDS", "3")]);
    assert!(
        said.contains("did not pick up the request")
            && said.contains("within 3s")
            && said.contains("aws logs tail /aws/lambda/km-manager --since 1h --region us-east-1"),
        "{said}"
    );
    assert_nothing_left(&aws);

    // The manager dies right after launching the instance: Lambda's retry finds the request
    // held by a dead attempt and removes what it made.
    aws.sim.clear_faults();
    aws.sim.fault("lambda-crash-after ec2:RunInstances");
    let said = create(&ec2, &[]);
    assert!(
        said.contains("the manager stopped while creating")
            && said.contains("what it had made was removed"),
        "{said}\n{}",
        manager_log(&aws)
    );
    assert!(manager_log(&aws).contains("(crash)"));
    assert_nothing_left(&aws);

    // --no-wait while the function runs nothing: the request stays queued, and km doctor does
    // not take the key made for it for an orphan.
    aws.sim.clear_faults();
    aws.sim.fault("lambda-unavailable");
    let id = aws
        .ok(&["create", ec2.to_str().unwrap(), "--remote", "--no-wait"])
        .trim()
        .to_owned();
    assert_eq!(request_items(&aws).len(), 1);
    // km list shows it, queued, before any record exists.
    let listed = aws.list();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "queued");
    let table = aws.ok(&["list"]);
    assert!(
        table.contains(&id) && table.contains("the management function has not made it yet"),
        "{table}"
    );
    let doctor = aws.run(&["doctor", "--fix"]);
    let said = String::from_utf8_lossy(&doctor.stdout).into_owned()
        + &String::from_utf8_lossy(&doctor.stderr);
    assert!(!said.contains("belong to no recorded sandbox"), "{said}");
    assert!(aws.env.key(&id).exists(), "{said}");
    // Once it has waited longer than km create --remote would, km doctor names it and --fix
    // withdraws it with its keypair.
    let mut said = String::new();
    wait_until(
        "km doctor to call the request stale",
        Duration::from_secs(20),
        || {
            let doctor = aws
                .command(&["doctor", "--fix", "--json"])
                .env("KM_REMOTE_PICKUP_SECONDS", "0")
                .output()
                .unwrap();
            said = String::from_utf8_lossy(&doctor.stdout).into_owned();
            said.contains("for the management function to pick it up")
        },
    );
    assert!(said.contains("withdrawn"), "{said}");
    assert_nothing_left(&aws);
}

#[test]
fn no_wait_returns_at_once_and_two_operators_create_through_one_function() {
    let alice = Aws::new();
    with_manager(&alice, 120);
    let bob = alice.join("bob");
    sidecars(&bob);
    let profile = repo_profile("ec2");
    let profile = profile.to_str().unwrap();

    // Two operators at once, through the one function.
    let spawn = |aws: &Aws| {
        aws.command(&["create", profile, "--remote"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&alice), spawn(&bob));
    let ids: Vec<String> = [first, second]
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(alice.list().len(), 2);
    assert!(alice.env.key(&ids[0]).exists() && bob.env.key(&ids[1]).exists());

    // --no-wait: the ID at once; km list follows the request to a running sandbox.
    let id = alice
        .ok(&["create", profile, "--remote", "--no-wait"])
        .trim()
        .to_owned();
    wait_until(
        "the remote create to finish",
        Duration::from_secs(180),
        || {
            alice
                .list()
                .iter()
                .any(|r| r["id"] == id.as_str() && r["status"] == "running")
        },
    );
    alice.ok(&["vscode", "start", &id, "--proxy"]);
    assert!(succeeds(alice.ssh(&format!("km-{id}")).arg("true")));
    for (aws, id) in [(&alice, &ids[0]), (&bob, &ids[1]), (&alice, &id)] {
        aws.ok(&["destroy", id, "--remote", "--yes"]);
    }
    assert!(alice.list().is_empty());
}
