"""The objects a training run creates, rendered through the provider's own code path
(``build_pod_request_obj`` + ``ApiClient().sanitize_for_serialization()``), validated with
kubernetes-validate in strict mode and checked against the restricted Pod Security Standard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import odp_airflow
from odp_airflow.kubernetes.plan import make_plan
from odp_airflow.kubernetes.pods import pod_operator_kwargs
from odp_airflow.kubernetes.render import render_objects
from odp_airflow.kubernetes.settings import CREDENTIALS_DIR, KubernetesSettings, parse_settings

# The oldest and newest schemas kubernetes-validate 1.37 ships: the supported range.
K8S_VERSIONS = ("1.25.0", "1.37.0")
PLUGINS = Path(odp_airflow.__file__).resolve().parents[1]
# the subprocess imports this checkout's code, whatever is installed
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS.parent), str(PLUGINS)])}
ROOT = "s3://bucket/odp/runs/object_detection_training/manual__1"


def _objects(hosts: int, gpus: int, **settings) -> list[dict]:
    plan = make_plan(ROOT, "object_detection_training", "manual__1", hosts, {})
    return render_objects(KubernetesSettings(gpus=gpus, **settings), plan)


def _pods(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "Pod"]


CASES = [(1, 0), (1, 2), (3, 0), (3, 1)]


@pytest.mark.parametrize(("hosts", "gpus"), CASES)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_in_strict_mode(hosts, gpus, version):
    objects = _objects(hosts, gpus, tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},))
    assert len(_pods(objects)) == hosts
    assert sum(o["kind"] == "Service" for o in objects) == (1 if hosts > 1 else 0)
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_an_unknown_field():
    pod = _pods(_objects(1, 1))[0]
    pod["spec"]["containers"][0]["gpuCount"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(("hosts", "gpus"), CASES)
def test_restricted_pod_security_standard(hosts, gpus):
    for pod in _pods(_objects(hosts, gpus)):
        spec = pod["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 1
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert spec["automountServiceAccountToken"] is False
        # restricted PSS: only these volume types
        allowed = {"emptyDir", "configMap", "secret", "projected", "persistentVolumeClaim"}
        for volume in spec["volumes"]:
            assert set(volume) - {"name"} <= allowed, volume
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc.get("privileged", False) is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
            assert not container.get("ports")  # no hostPort
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert {"/opt/ml", "/tmp", "/dev/shm"} <= mounts.keys()  # noqa: S108  pod paths


@pytest.mark.parametrize(("hosts", "gpus"), CASES)
def test_pod_spec_as_the_issue_requires(hosts, gpus):
    pods = _pods(_objects(hosts, gpus))
    names = {p["metadata"]["name"] for p in pods}
    assert len(names) == hosts
    for index, pod in enumerate(pods):
        spec, container = pod["spec"], pod["spec"]["containers"][0]
        limits = container["resources"]["limits"]
        if gpus:
            assert limits["nvidia.com/gpu"] == str(gpus)
        else:
            assert "nvidia.com/gpu" not in limits
        shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert spec["activeDeadlineSeconds"] > 0
        assert spec["terminationGracePeriodSeconds"] >= 120
        assert spec["restartPolicy"] == "Never"
        assert "command" not in container  # the image's tini ENTRYPOINT stays PID 1
        assert container["terminationMessagePath"] == "/opt/ml/output/failure"
        labels = pod["metadata"]["labels"]
        assert labels["try_number"] == "1" and labels["map_index"] == str(index)
        assert spec["hostname"] == f"algo-{index + 1}"
        assert container["args"][-2:] == ["--host", f"algo-{index + 1}"]
        if hosts > 1:
            assert spec["subdomain"] and spec["dnsConfig"]["searches"][0].startswith(
                spec["subdomain"] + ".odp.svc."
            )
        else:
            assert "subdomain" not in spec


def test_service_selects_the_run_and_publishes_not_ready_pods():
    objects = _objects(3, 1)
    service = objects[0]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    for pod in _pods(objects):
        assert pod["spec"]["subdomain"] == service["metadata"]["name"]
        labels = pod["metadata"]["labels"]
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())


def test_deadline_follows_the_stopping_condition():
    settings = KubernetesSettings()
    plan = make_plan(ROOT, "d", "r", 1, {"max_runtime_seconds": "7200"})
    pod = _pods(render_objects(settings, plan))[0]
    assert pod["spec"]["activeDeadlineSeconds"] == 7200 + settings.deadline_margin_seconds


def test_operator_policy_never_leaves_a_running_pod():
    from odp_airflow.kubernetes.pods import PodPlan, build_pod_operator

    plan = PodPlan("d", "r", ROOT, ("algo-1",))
    op = build_pod_operator(KubernetesSettings(), plan, "algo-1")
    assert op.on_finish_action.value == "delete_pod"
    assert op.reattach_on_restart is True and op.do_xcom_push is False
    keep = build_pod_operator(KubernetesSettings(keep_failed_pods=True), plan, "algo-1")
    assert keep.on_finish_action.value == "delete_active_pod"  # Pending/Running still deleted
    assert build_pod_operator(KubernetesSettings(deferrable=True), plan, "algo-1").deferrable


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gpu": 1}, "unknown setting(s) gpu"),
        ({"gpus": "two"}, "odp_kubernetes.gpus='two' is invalid: expected an integer in [0, 16]"),
        ({"gpus": 10**9}, "expected an integer in [0, 16]"),
        (
            {"memory_limit": "lots"},
            "odp_kubernetes.memory_limit 'lots' is not a Kubernetes quantity",
        ),
        ({"termination_grace_seconds": 30}, "expected an integer in [120, 3600]"),
        ({"run_as_user": 0}, "non-root"),
        ({"tolerations": "gpu"}, "list of toleration objects"),
        # issue 27: Kubernetes' own name rules, when the run starts
        ({"namespace": "ODP-Prod"}, "namespace 'ODP-Prod' is not a DNS-1123 label"),
        ({"image": "x;rm -rf /"}, "image 'x;rm -rf /' is not an image reference"),
        ({"image": "Registry/UPPER:tag"}, "is not an image reference"),
        ({"service_account": "../../kube-system:admin"}, "service_account"),
        ({"credentials_secret": "S3 creds"}, "credentials_secret 'S3 creds' is not a DNS-1123"),
        ({"image_pull_secrets": ["a_b"]}, "image_pull_secrets 'a_b'"),
        ({"priority_class": "High!"}, "priority_class"),
        ({"node_selector": {"bad key!": "x"}}, "node_selector key 'bad key!'"),
        ({"node_selector": {"gpu": "yes please"}}, "node_selector['gpu']"),
        ({"tolerations": [{"key": "a", "operator": "Sometimes"}]}, "operator must be one of"),
        ({"tolerations": [{"key": "a b", "operator": "Exists"}]}, "label key"),
        ({"tolerations": [{"key": "a", "effect": "Never"}]}, "effect must be one of"),
        ({"tolerations": [{"key": "a", "tolerationSeconds": 1e30}]}, "tolerationSeconds"),
        ({"env_from_secret": "odp-s3"}, "replaced by credentials_secret"),
    ],
)
def test_bad_settings_name_the_setting(data, message):
    with pytest.raises(ValueError, match="odp_kubernetes") as info:
        parse_settings(data)
    assert message in str(info.value)


def test_dry_run_prints_every_object_as_yaml(tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"instance_count": 3, "artifact_root": "s3://bucket/odp"}))
    settings = tmp_path / "k8s.json"
    settings.write_text(json.dumps({"namespace": "vision", "gpus": 1}))
    out = subprocess.run(  # noqa: S603  test-built argv
        [sys.executable, "-m", "odp_airflow.kubernetes.dry_run", "--conf", str(conf)]
        + ["--settings", str(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        check=True,
    )
    docs = list(yaml.safe_load_all(out.stdout))
    assert [d["kind"] for d in docs] == ["Service", "Pod", "Pod", "Pod"]
    assert {d["metadata"]["namespace"] for d in docs} == {"vision"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_dry_run_bad_conf_is_one_line(tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"instance_count": 0}))
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "odp_airflow.kubernetes.dry_run", "--conf", str(conf)],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "error: Param 'instance_count'=0 is invalid: expected an integer in [1, 64]"
    )
    assert "Traceback" not in out.stderr


def test_credentials_are_a_mounted_file_and_the_uid_is_above_10000():
    """Issue 27: scanners want secrets as files (or workload identity), not envFrom, and a
    uid >= 10000 by default."""
    settings = KubernetesSettings()
    assert settings.run_as_user >= 10000
    plan = make_plan("s3://bucket/odp/runs/d/r", "d", "r", 1, {})
    kwargs = pod_operator_kwargs(settings, plan, "algo-1")
    spec = kwargs["pod_template_dict"]["spec"]
    (container,) = spec["containers"]
    assert "envFrom" not in container
    assert spec["securityContext"]["runAsUser"] == settings.run_as_user
    (volume,) = [v for v in spec["volumes"] if v["name"] == "s3-credentials"]
    assert volume["secret"]["secretName"] == "odp-s3"
    assert {"name": "s3-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True} in container[
        "volumeMounts"
    ]
    assert kwargs["env_vars"]["AWS_SHARED_CREDENTIALS_FILE"] == f"{CREDENTIALS_DIR}/credentials"
    # workload identity (IRSA): no Secret at all
    irsa = pod_operator_kwargs(parse_settings({"credentials_secret": None}), plan, "algo-1")
    assert "AWS_SHARED_CREDENTIALS_FILE" not in irsa["env_vars"]
    assert all(v["name"] != "s3-credentials" for v in irsa["pod_template_dict"]["spec"]["volumes"])
