#!/usr/bin/env python3
"""Copy the EndpointPickerConfigs embedded in llm-d-inference-scheduler's docs and chart
files into tests/data/epp-configs/llm-d-inference-scheduler/, one file per config.

usage: tests/data/epp-configs/extract-docs.py GIT_DIR [OUT_DIR]
  GIT_DIR: a clone (or bare mirror) of github.com/llm-d/llm-d-inference-scheduler; HEAD
  is read. Prints what it wrote and what it skipped (and why), so a refresh shows what
  changed upstream. The rules are in tests/data/epp-configs/README.md.
"""
import os
import re
import subprocess
import sys

REPO = "github.com/llm-d/llm-d-inference-scheduler"


def git(gitdir, *args):
    return subprocess.run(["git", "-C", gitdir, *args], capture_output=True, text=True,
                          check=True).stdout


def out_name(path, suffix):
    base = re.sub(r"[/.]", "-", path)
    return f"{base}-{suffix}.yaml"


def is_document(body):
    """A whole config: a YAML mapping with a top-level plugins: key (llm-d's loader fills
    in the rest: apiVersion/kind, a default profile, the picker, the profile handler)."""
    return re.search(r"^plugins:", body, re.M) is not None


def blocks(text):
    """Every fenced block, numbered from 0 in file order."""
    return [(m.group(2), m.group(3))
            for m in re.finditer(r"^([ \t]*)```([^\n]*)\n(.*?)^\1```", text, re.M | re.S)]


def chart_string(body):
    """The config held in a Helm values snippet as a block string (`name.yaml: |`)."""
    m = re.search(r"^( *)\S+\.yaml: \|\n((?:\1  .*\n|\s*\n)+)", body, re.M)
    if not m:
        return None
    lines = m.group(2).splitlines()
    ind = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return "\n".join(l[ind:] for l in lines).rstrip() + "\n"


def main():
    gitdir = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "llm-d-inference-scheduler")
    commit = git(gitdir, "rev-parse", "HEAD").strip()
    md = sorted(set(
        git(gitdir, "grep", "-l", "-e", "EndpointPickerConfig", "-e", "schedulingProfiles:",
            "-e", "- type:", "HEAD", "--", "*.md").replace("HEAD:", "").split()))
    for path in md:
        text = git(gitdir, "show", f"HEAD:{path}")
        for i, (lang, body) in enumerate(blocks(text)):
            if "type:" not in body and "EndpointPickerConfig" not in body:
                continue
            where = f"fenced block {i}"
            cfg = chart_string(body) if "pluginsCustomConfig" in body else body
            if cfg is None or not is_document(cfg) or "- ...." in cfg:
                print(f"skip {path} {where}: a fragment, not a whole config")
                continue
            if "{{" in cfg:
                print(f"skip {path} {where}: Helm template, not a config")
                continue
            if cfg is not body:
                where += " (the Helm values' custom-plugins.yaml string)"
            name = out_name(path, f"block{i}")
            with open(os.path.join(out, name), "w") as f:
                f.write(f"# source: {REPO} {path} ({where}) @ {commit}\n")
                f.write(cfg if cfg.endswith("\n") else cfg + "\n")
            print(f"wrote {name}")
    # the chart's values.yaml carries its example config as comments
    path = "config/charts/inferencepool/values.yaml"
    text = git(gitdir, "show", f"HEAD:{path}")
    m = re.search(r"^  # pluginsCustomConfig:\n((?:  #.*\n)+)", text, re.M)
    if m:
        body = "".join(re.sub(r"^  # ?", "", l) + "\n" for l in m.group(1).splitlines())
        cfg = chart_string(body)
        if cfg and is_document(cfg):
            name = out_name(path, "pluginsCustomConfig")
            with open(os.path.join(out, name), "w") as f:
                f.write(f"# source: {REPO} {path} (the commented pluginsCustomConfig example's "
                        f"custom-plugins.yaml, uncommented) @ {commit}\n")
                f.write(cfg)
            print(f"wrote {name}")


if __name__ == "__main__":
    main()
