import pytest

from tail_bench.evaluation import cl_metrics as cm

# rows: zero-shot, after step 1, 2, 3 ; columns: data sets 1..3 (computed by hand below)
R = [[0.1, 0.2, 0.3],
     [0.8, 0.3, 0.2],
     [0.6, 0.9, 0.4],
     [0.5, 0.4, 0.7]]


def test_averages():
    assert cm.average_after(R, 1) == pytest.approx(0.8)
    assert cm.average_after(R, 2) == pytest.approx(0.75)
    assert cm.final_average(R) == pytest.approx((0.5 + 0.4 + 0.7) / 3)


def test_forgetting_is_max_over_history_minus_final():
    # j=1: max(R1,R2)[1] = 0.8 - 0.5 ; j=2: max(R2)[2] = 0.9 - 0.4 ; last: None
    assert cm.forgetting(R) == pytest.approx([0.3, 0.5, None])
    assert cm.mean_forgetting(R) == pytest.approx(0.4)  # over j < T only


def test_bwt_fwt_and_avalanche_variant():
    assert cm.bwt(R) == pytest.approx(((0.5 - 0.8) + (0.4 - 0.9)) / 2)
    assert cm.fwt(R) == pytest.approx(((0.3 - 0.2) + (0.4 - 0.3)) / 2)
    assert cm.avalanche_forgetting(R) == pytest.approx([0.3, 0.5, None])
    r = [[0, 0], [0.2, 0], [0.9, 0.5]]  # rises after its step: Chaudhry counts the max
    assert cm.forgetting([[0, 0, 0], [0.5, 0, 0], [0.9, 0, 0], [0.4, 0, 0]])[0] == \
        pytest.approx(0.5)
    assert cm.avalanche_forgetting([[0, 0, 0], [0.5, 0, 0], [0.9, 0, 0], [0.4, 0, 0]])[0] == \
        pytest.approx(0.1)
    assert cm.summarize(r)["bwt"] == pytest.approx(0.7)


def test_shape_errors_and_reference_rows():
    with pytest.raises(ValueError, match="zero-shot row 0"):
        cm.forgetting([[0.1, 0.2], [0.3, 0.4]])
    assert cm.summarize([[0.1, 0.3]]) == {"final_average": pytest.approx(0.2)}
