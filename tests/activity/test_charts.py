"""Chart geometry people can read: whole-number ticks for counts, a named axis, tone classes."""

from activity import charts

SERIES = [charts.Series("n", "Sessions", "blue")]


def _chart(values, **kwargs):
    labels = [f"d{i}" for i in range(len(values))]
    return charts.bar_chart(
        chart_id="c",
        title="T",
        labels=labels,
        rows=[{"n": v} for v in values],
        series=SERIES,
        **kwargs,
    )


def test_count_charts_tick_on_whole_numbers_only():
    for values in ([1], [0, 2, 1], [3], [7, 1], [13, 4], [0], [250, 3]):
        ticks = [t["label"] for t in _chart(values, integer=True)["ticks"]]
        assert all(label.replace(",", "").isdigit() for label in ticks), (values, ticks)
        numbers = [int(label.replace(",", "")) for label in ticks]
        assert numbers[0] == 0 and numbers[-1] >= max(values)
        assert len(set(numbers)) == len(numbers) and 2 <= len(numbers) <= 6, (values, numbers)
    # Without integer=True (minutes, credits) fractions stay allowed.
    assert [t["label"] for t in _chart([1])["ticks"]] == ["0", "0.2", "0.5", "0.8", "1"]


def test_axis_label_and_tone_class_reach_the_template_data():
    chart = _chart([2, 1], integer=True, axis_label="Sessions")
    assert chart["axis_label"] == "Sessions"
    assert {rect.fill for rect in chart["rects"]} == {"blue"}
