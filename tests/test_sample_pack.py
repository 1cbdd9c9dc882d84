"""Sample packs (inference/sample_pack.py): `distill generate --pack`, the zip's names,
levels and manifest, and the dashboard's pack route refusing what is not the model's."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from commands import distill
from helpers import page_client

from distill.audio.dataset import PEAK_TARGET
from distill.inference.generate import GenerateSpec, generate_clips
from distill.inference.sample_pack import PACK_MANIFEST, PackError, PackSound, pack_bytes
from distill.models.history import new_out_dir

pytestmark = pytest.mark.slow


def wavs(data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {
            name: sf.read(io.BytesIO(archive.read(name)))[0]
            for name in archive.namelist()
            if name.endswith(".wav")
        }


def test_generate_writes_its_clips_as_a_pack(library_server, tmp_path) -> None:
    target = tmp_path / "kit-pack.zip"
    made = distill(
        tmp_path / "home", "generate", str(library_server["model"]), "--count", "2",
        "--seed", "3", "--seconds", "0.5", "--continuous", "--pack", str(target),
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"sample pack: {target} (2 WAVs and {PACK_MANIFEST})" in made.stderr
    data = target.read_bytes()
    model = Path(library_server["model"]).stem
    sounds = wavs(data)
    assert sorted(sounds) == [f"{model}_continuous_seed3.wav", f"{model}_continuous_seed4.wav"]
    for audio in sounds.values():
        assert np.abs(audio).max() == pytest.approx(PEAK_TARGET, abs=1e-3)  # 24-bit
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read(PACK_MANIFEST))
    assert [(s["mode"], s["seed"]) for s in manifest["sounds"]] == [
        ("continuous", 3), ("continuous", 4),
    ]  # fmt: skip
    assert all(s["gain_db"] > 0 and s["seconds"] == 0.5 for s in manifest["sounds"])


def test_names_are_unique_and_a_bad_sound_is_named(tmp_path) -> None:
    sound = tmp_path / "a.wav"
    sf.write(sound, 0.1 * np.sin(np.arange(800) / 5), 8000)
    same = [PackSound(sound, "one-shot", 7), PackSound(sound, "one-shot", 7)]
    data, manifest = pack_bytes("kit", [*same, PackSound(sound, "edit", label="mine")])
    assert sorted(wavs(data)) == [
        "kit_edit_mine.wav", "kit_one-shot_seed7-2.wav", "kit_one-shot_seed7.wav",
    ]  # fmt: skip
    assert manifest["sounds"][0]["gain_db"] == pytest.approx(19.08, abs=0.01)  # 0.1 -> 0.9
    with pytest.raises(PackError, match="at least one"):
        pack_bytes("kit", [])
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(PackError, match="cannot read bad.wav"):
        pack_bytes("kit", [PackSound(tmp_path / "bad.wav", "edit", label="bad")])


def test_the_pack_route_takes_only_the_models_own_sounds(library_server) -> None:
    home = library_server["home"]
    folder = new_out_dir("kit", home)
    clip = generate_clips(GenerateSpec(home / "models" / "kit.distill", folder, seconds=0.3)).clips[
        0
    ]
    (folder / "clip01_seed0_match.wav").write_bytes(Path(clip.path).read_bytes())
    listed = f"{folder.name}/{Path(clip.path).name}"
    with page_client(library_server["server"]) as http:
        assert f'value="{listed}"' in http.get("/models/kit").text  # offered on the page
        ok = http.post("/models/kit/pack", data={"clip": listed})
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/zip"
        assert 'filename="kit-pack.zip"' in ok.headers["content-disposition"]
        for bad, why in (
            ("../../models/kit.distill", "bad path"),
            (f"{folder.name}/clip01_seed0_match.wav", "not a generated clip"),
            (f"{folder.name}/generation.json", "not a generated clip"),
        ):
            refused = http.post("/models/kit/pack", data={"clip": bad})
            assert refused.status_code == 400 and why in refused.text, refused.text
        assert "pick at least one" in http.post("/models/kit/pack", data={}).text
        assert http.post("/models/nope/pack", data={"clip": listed}).status_code == 404
