"""Window indexes against the official `split_into_chunks` figures (tcmr.md §7.2)."""

import numpy as np
import pytest

from storage.windows import eval_window_sequence, eval_windows, train_windows

# Three videos of 40, 10 and 35 frames stored back to back (the reference's checked example).
SEQS = [(0, 40), (40, 10), (50, 35)]


def test_official_window_counts() -> None:
    assert len(eval_windows(SEQS, match_vibe=True)) == 64
    assert len(eval_windows(SEQS, match_vibe=False)) == 75
    assert len(train_windows(SEQS, stride=16)) == 4


def test_eval_one_window_per_frame_with_mid_frame_k() -> None:
    win = eval_windows(SEQS)
    mids = win[:, 8]
    expected = np.concatenate([np.arange(0, 40), np.arange(50, 85)])
    np.testing.assert_array_equal(mids, expected)
    # Head frames 0..7 and tail frames (last 7) are one frame repeated 16 times.
    for k in [0, 7, 33, 39, 50, 84]:
        row = win[list(mids).index(k)]
        assert (row == k).all()
    # Interior windows are the 16 consecutive rows around k, never crossing a sequence.
    row = win[list(mids).index(8)]
    np.testing.assert_array_equal(row, np.arange(0, 16))
    row = win[list(mids).index(77)]
    np.testing.assert_array_equal(row, np.arange(69, 85))


def test_eval_keep_drops_rows_and_closes_gaps() -> None:
    keep = np.ones(85, dtype=bool)
    keep[20:22] = False
    win = eval_windows([(0, 40)], keep=keep)
    assert len(win) == 38
    assert 20 not in win and 21 not in win
    np.testing.assert_array_equal(
        win[12], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    )
    np.testing.assert_array_equal(win[13][-3:], [18, 19, 22])


def test_train_stride1_official_padding_and_truncation() -> None:
    starts = train_windows([(100, 40)], stride=1, match_vibe=True)
    # 32 kept frames -> 17 windows, plus 8 copies of the first and 7 of the last.
    assert len(starts) == 32
    assert (starts[:9] == 100).all() and (starts[-8:] == 116).all()
    assert starts.max() + 16 <= 100 + 32
    plain = train_windows([(100, 40)], stride=1, match_vibe=False)
    np.testing.assert_array_equal(plain, np.arange(100, 125))


def test_stride16_drops_tail_and_short_sequences() -> None:
    np.testing.assert_array_equal(train_windows(SEQS, stride=16), [0, 16, 50, 66])
    assert len(train_windows([(0, 15)], stride=1)) == 0
    assert eval_windows([(0, 15)]).shape == (0, 16)


def test_window_sequence_lookup() -> None:
    win = eval_windows(SEQS)
    seq = eval_window_sequence(SEQS, win)
    assert (seq[:40] == 0).all() and (seq[40:] == 2).all()


def test_bad_stride() -> None:
    with pytest.raises(ValueError, match="stride"):
        train_windows(SEQS, stride=0)
