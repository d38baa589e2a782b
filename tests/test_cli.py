import json

import imageio.v2 as imageio
import pytest

from vidgen.cli import main


def test_config_prints_resolved_json(capsys):
    assert main(["config", "--set", "data.frame_size=32"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["frame_size"] == 32


def test_prepare_and_preview(tmp_path, capsys):
    out = str(tmp_path / "ds")
    tiny = ["--set", "data.frame_size=16", "--set", "data.train_clips=6",
            "--set", "data.val_clips=2", "--set", "data.test_clips=2"]
    assert main(["data", "prepare", "digits", "--out", out, "--quiet"] + tiny) == 0
    assert "train: 6 clips" in capsys.readouterr().out
    gif = str(tmp_path / "clips.gif")
    assert main(["data", "preview", out, "--out", gif, "--num", "3"] + tiny) == 0
    frames = imageio.mimread(gif)
    assert len(frames) == 20 and frames[0].shape[1] > 16 * 2
    png = str(tmp_path / "grid.png")
    assert main(["data", "preview", "shapes", "--out", png, "--num", "2", "--frames", "4",
                 "--set", "data.channels=3"] + tiny) == 0
    assert imageio.imread(png).shape == (16 * 2 + 2, 16 * 4 + 6, 3)


@pytest.mark.parametrize("argv, message", [
    (["data", "prepare", "/no/such/path", "--out", "x"], "does not exist"),
    (["config", "--set", "data.nope=1"], "Unknown config key 'data.nope'"),
    (["data", "preview", "digits", "--out", "clips.avi"], "must end in .gif, .mp4 or .png"),
    (["data", "preview", "digits", "--out", "a.gif", "--num", "0"], "--num must be at least 1"),
])
def test_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_training_on_a_builtin_source_suggests_prepared_shards(tmp_path):
    """The suggested command prepares exactly the data the training run would stream."""
    import shlex

    from vidgen.cli import build_parser, resolve_config, streaming_hint

    argv = ["train", "--preset", "shapes", "--set", "data.frame_size=32",
            "--set", "data.train_clips=6"]
    args = build_parser().parse_args(argv)
    hint = streaming_hint(resolve_config(args, args.data), args)
    command = hint.split("`")[1]
    assert command.startswith("vidgen data prepare shapes --out data/shapes-shapes")
    prepare_args = build_parser().parse_args(shlex.split(command)[1:])
    assert (resolve_config(prepare_args, prepare_args.source).data
            == resolve_config(args, args.data).data)
    assert "--data data/shapes-shapes" in hint
    # A prepared dataset or a file on disk gets no note.
    args = build_parser().parse_args(["train", "--data", str(tmp_path / "clips.npy")])
    assert streaming_hint(resolve_config(args, args.data), args) is None


def test_verbose_flag_comes_before_or_after_the_command():
    from vidgen.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["config"]).verbose is False
    assert parser.parse_args(["-v", "config"]).verbose is True
    assert parser.parse_args(["config", "-v"]).verbose is True
    assert parser.parse_args(["data", "preview", "digits", "--out", "x.gif", "-v"]).verbose
