import pytest

from vae_cli.process.errors import TrainingError, VaeCliError, reported_errors


def test_user_errors_become_one_message_and_status_2(capsys):
    with pytest.raises(SystemExit) as info, reported_errors("vae-x", "interrupted."):
        raise VaeCliError("the file is missing; pass another one.")
    assert info.value.code == 2
    assert capsys.readouterr().err == "vae-x: error: the file is missing; pass another one.\n"


def test_an_error_can_carry_its_own_exit_status(capsys):
    error = TrainingError("stopped by SIGTERM")
    error.exit_code = 143
    with pytest.raises(SystemExit) as info, reported_errors("vae-x", "interrupted."):
        raise error
    assert info.value.code == 143


def test_ctrl_c_is_a_message_and_status_130(capsys):
    with pytest.raises(SystemExit) as info, reported_errors("vae-x", "interrupted; nothing was written."):
        raise KeyboardInterrupt
    assert info.value.code == 130
    assert capsys.readouterr().err == "vae-x: interrupted; nothing was written.\n"


def test_other_exceptions_keep_their_traceback():
    with pytest.raises(ValueError), reported_errors("vae-x", "interrupted."):
        int("not a number")
