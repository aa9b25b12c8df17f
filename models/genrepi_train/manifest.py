"""The one writer of genrepi manifests (`models/*.toml`) and the constants
every model shares: GTZAN's labels in genrepi's order, the normalisation and
the shipped front-end. Standard library only, so the test-model generator
(models/tools/make_tiny_model.py) uses it without PyTorch."""
import json

# GTZAN's genres, in the order every genrepi model outputs them (the order
# `genrepi features` reads the genre folders in).
GTZAN_LABELS = ["blues", "classical", "country", "disco", "hiphop",
                "jazz", "metal", "pop", "reggae", "rock"]

# Log-mel dB values are normalised as (x - mean) / std before the network.
NORMALIZE_MEAN, NORMALIZE_STD = -40.0, 20.0

# The shipped front-end (librosa's defaults at 22050 Hz, 130 frames ≈ 3 s).
FEATURES = """[features]
sample_rate = 22050
n_fft = 2048
hop_length = 512
n_mels = 128
fmin = 0.0
fmax = 11025.0
frames = 130
top_db = 80.0"""


def manifest_text(name: str, model: str, sha256: str, labels, shape, provenance: dict,
                  features: str = FEATURES, variants=(), comment: str = "") -> str:
    """A manifest's text. `model` is the ONNX file relative to the manifest;
    `features` its [features] table; `variants`: (name, file, sha256,
    arithmetic, accuracy) for [[variant]] tables; `comment`: lines put
    first, each prefixed with `# `."""
    tables = "".join(f"""
[[variant]]
name = "{vname}"
model = "{vfile}"
sha256 = "{vsha}"
arithmetic = "{arith}"
accuracy = {json.dumps(acc, ensure_ascii=False)}
""" for vname, vfile, vsha, arith, acc in variants)
    prov = "\n".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in provenance.items())
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return f"""{head}name = "{name}"
model = "{model}"
sha256 = "{sha256}"
labels = [{", ".join(json.dumps(l) for l in labels)}]
output = "logits"

[input]
shape = {list(shape)}

[normalize]
mean = {NORMALIZE_MEAN}
std = {NORMALIZE_STD}

{features}
{tables}
[provenance]
{prov}
"""
