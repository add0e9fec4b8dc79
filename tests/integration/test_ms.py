"""tandem ms generate from the command line: the samples generate, and invalid input
fails with a message naming the file and field, a non-zero exit, and nothing on stdout."""

import os
import subprocess
import tempfile

from harness import TANDEM, run

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SAMPLES = os.path.join(ROOT, "deploy", "samples")


def generate(*args):
    p = subprocess.run([TANDEM, "ms", "generate"] + list(args), capture_output=True, text=True,
                       timeout=20)
    return p.returncode, p.stdout, p.stderr


def test_samples_generate():
    for cr, base in [("nixl-xpyd/facebook-nixl.yaml", "nixl-xpyd/universal-baseconfig-hf.yaml"),
                     ("facebook/msvc.yaml", "facebook/baseconfig.yaml"),
                     ("sim/msvc.yaml", "sim/baseconfig.yaml")]:
        rc, out, err = generate("-m", os.path.join(SAMPLES, cr), "-b", os.path.join(SAMPLES, base))
        assert rc == 0, (cr, err)
        assert out.startswith("---\n") and "kind: Deployment" in out and err == "", (cr, err)
    # kubectl-style multi-document stream: one object per document, in dependency order.
    rc, out, _ = generate("-m", os.path.join(SAMPLES, "nixl-xpyd/facebook-nixl.yaml"),
                          "-b", os.path.join(SAMPLES, "nixl-xpyd/universal-baseconfig-hf.yaml"),
                          "--pool-api", "v1", "-n", "team-a")
    kinds = [line.split(": ")[1] for line in out.splitlines() if line.startswith("kind: ")]
    assert kinds == ["ServiceAccount", "ServiceAccount", "RoleBinding", "Service", "Deployment",
                     "Deployment", "Deployment", "InferencePool", "InferenceModel", "HTTPRoute"]
    assert "apiVersion: inference.networking.k8s.io/v1" in out
    assert out.count("namespace: team-a") >= 10


def test_invalid_input_fails_cleanly():
    d = tempfile.mkdtemp()
    base_cr = ("apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1}\n"
               "spec:\n  routing: {%s}\n  modelArtifacts: {uri: \"%s\"}\n"
               "  decode: {containers: [{name: vllm, image: v}]}\n")
    cases = [
        (base_cr % ("", "hf://a/b"), None, "spec.routing.modelName: required"),
        (base_cr % ("modelName: a/b", "ftp://a/b"), None, "spec.modelArtifacts.uri"),
        ("apiVersion: llm-d.ai/v1alpha1\nkind: ModelService\nmetadata: {name: m1\n", None, ":"),
        (base_cr % ("modelName: a/b", "hf://a/b"),
         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata:\n"
         "  decodeDeployment: |\n    kind: Deployment\n    x: {{ .Nope }}\n",
         "data.decodeDeployment:2:"),
    ]
    for i, (cr, base, want) in enumerate(cases):
        crp = os.path.join(d, "cr%d.yaml" % i)
        open(crp, "w").write(cr)
        args = ["-m", crp]
        if base:
            bp = os.path.join(d, "base%d.yaml" % i)
            open(bp, "w").write(base)
            args += ["-b", bp]
        rc, out, err = generate(*args)
        assert rc != 0 and out == "", (i, rc, out)
        named = bp if base else crp
        assert named in err and want in err, (i, err)
    rc, out, err = generate("-m", os.path.join(d, "missing.yaml"))
    assert rc == 2 and out == "" and "missing.yaml" in err
    rc, out, err = generate()
    assert rc == 2 and "-m" in err


if __name__ == "__main__":
    run([test_samples_generate, test_invalid_input_fails_cleanly])
