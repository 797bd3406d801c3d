"""The Pareto fronts and the choice of what to deploy, on hand-made points."""

from pipeline.benchmark.front import choose, decisions, dominates, front, mark_fronts


def m(name, ms, held, ood, kind="pkd", **extra):
    return {"name": name, "kind": kind, "latency_ms": ms, "similarity_spearman": held,
            "ood_similarity_spearman": ood, "ood_neighbour_recall_at_10": ood and ood / 2, "fidelity_cosine": held,
            **extra}


ROWS = [m("teacher", 30.0, 1.0, 1.0, kind="teacher"), m("teacher-int8", 14.0, 0.95, 0.94, kind="teacher"),
        m("pkd_2", 10.0, 0.80, 0.60), m("pkd_1", 5.0, 0.70, 0.55), m("pkd_1-int8", 3.0, 0.69, 0.50),
        m("arch_6ms", 5.9, 0.72, 0.52, kind="searched", budget_ms=6.0),
        m("arch_4ms", 3.9, 0.60, 0.58, kind="searched", budget_ms=4.0), m("peer", 0.1, 0.20, 0.30, kind="peer")]


def test_dominance_needs_no_slower_and_no_worse_and_one_strictly():
    a, b = m("a", 1.0, 0.5, 0.5), m("b", 2.0, 0.5, 0.5)
    assert dominates(a, b, "ood_similarity_spearman") and not dominates(b, a, "ood_similarity_spearman")
    assert not dominates(a, dict(a, name="a2"), "ood_similarity_spearman")  # a tie dominates nothing
    assert not dominates(a, m("c", 2.0, 0.5, None), "ood_similarity_spearman")  # unscored: never judged


def test_the_front_is_every_model_nothing_beats_fastest_first():
    assert front(ROWS, "ood_similarity_spearman") == ["peer", "pkd_1-int8", "arch_4ms", "pkd_2", "teacher-int8",
                                                      "teacher"]
    # held out: the searched 6 ms student is beaten by nothing as fast; the 4 ms one by the int8 PKD student
    assert front(ROWS, "fidelity_cosine") == ["peer", "pkd_1-int8", "pkd_1", "arch_6ms", "pkd_2", "teacher-int8",
                                              "teacher"]
    fronts = mark_fronts([dict(r) for r in ROWS])
    assert fronts["ood_similarity_spearman"][0] == "peer"


def test_the_choice_fits_the_budget_and_reads_only_the_held_out_split():
    assert choose(ROWS, 6.0)["name"] == "arch_6ms"          # 0.72 held out, though pkd_1 is better out of domain
    assert choose(ROWS, 4.0)["name"] == "pkd_1-int8"        # 0.69 held out against the searched student's 0.60
    assert choose(ROWS, 0.05) is None                        # nothing fits
    # the out-of-domain scores never move the choice: give every other model a perfect OOD score
    loud = [dict(r, ood_similarity_spearman=1.0) if r["name"] != "arch_6ms" else r for r in ROWS]
    assert choose(loud, 6.0)["name"] == "arch_6ms"
    tie = [m("slow", 5.0, 0.7, 0.1), m("fast", 4.0, 0.7, 0.1)]
    assert choose(tie, 6.0)["name"] == "fast"                # a tie goes to the faster


def test_each_budget_says_what_dominates_its_searched_student_and_by_how_much():
    d4, d6 = decisions(ROWS, [4.0, 6.0])
    assert d4["deploy"] == "pkd_1-int8" and d6["deploy"] == "arch_6ms"
    (v4,) = d4["searched"]
    assert v4["name"] == "arch_4ms" and not v4["chosen"] and v4["ood_similarity_spearman"] is None  # on that front
    held = v4["fidelity_cosine"]
    assert held["by"] == "pkd_1-int8" and round(held["gain"], 6) == 0.09 and round(held["latency_ratio"], 4) == 0.7692
    (v6,) = d6["searched"]
    assert v6["chosen"] and v6["ood_similarity_spearman"]["by"] == "arch_4ms"  # the largest gain of those that beat it
