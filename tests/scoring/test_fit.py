from __future__ import annotations

import pytest

from scoring import score_fit
from scoring.fit import grade_at_least, grade_for

from .helpers import profile


@pytest.mark.parametrize(
    "email, expected",
    [
        ("jane@acme-corp.fr", 5),  # professional
        ("jane@gmail.com", -10),
        ("jane@GMail.com", -10),
        ("jane@yahoo.co.uk", -10),  # glob yahoo.*
        ("jane@yahoo.fr", -10),
        ("jane@hotmail.fr", -10),
        ("jane@outlook.com", -10),
        ("jane@orange.fr", -10),
        ("jane@rivalscore.example", -100),  # competitor
        ("jane@eu.rivalscore.example", -100),  # competitor sub-domain
        ("jane@notrivalscore.example", 5),  # not a sub-domain
        (None, 0),
        ("garbage", 0),  # malformed: treated as missing
    ],
)
def test_email_fit(rules, email, expected):
    fit = score_fit(profile(email=email, title=None, size=None, industry=None, country=None), rules)
    assert fit.contributions.get("email", 0) == expected
    assert fit.score == expected


@pytest.mark.parametrize(
    "title, seniority, function",
    [
        ("Chief Marketing Officer", 10, 4),
        ("CEO & Founder", 10, 0),
        ("VP Sales", 8, 3),
        ("Head of Growth", 8, 4),
        ("Directeur Commercial", 6, 3),
        ("Marketing Manager", 3, 4),
        ("Responsable Communication", 3, 4),
        ("IT Manager", 3, 2),
        ("Marketing Intern", -5, 4),
        ("Talent Acquisition Partner", 0, 4),  # 'acquisition' is listed under marketing first
        ("Recruiter", 0, -3),
        ("Software Engineer", 0, 0),
        ("Headhunter", 0, 0),  # whole words only: 'head' does not match 'headhunter'
        ("", 0, 0),
    ],
)
def test_title_fit(rules, title, seniority, function):
    fit = score_fit(profile(email=None, title=title, size=None, industry=None, country=None), rules)
    assert fit.contributions.get("seniority", 0) == seniority
    assert fit.contributions.get("function", 0) == function


@pytest.mark.parametrize("size, points", [(1, -5), (10, -5), (11, 2), (50, 2), (51, 5), (200, 5), (201, 6), (1000, 6),
                                          (1001, 4), (5000, 4), (5001, 2), (10**6, 2), (0, 0), (None, 0)])
def test_company_size_bands(rules, size, points):
    fit = score_fit(profile(email=None, title=None, size=size, industry=None, country=None), rules)
    assert fit.contributions.get("company_size", 0) == points


@pytest.mark.parametrize("industry, points", [("Computer Software", 3), ("SaaS", 3), ("Retail", 0), (None, 0),
                                              ("Information Technology and Services", 3)])
def test_industry(rules, industry, points):
    assert score_fit(profile(email=None, title=None, size=None, industry=industry, country=None), rules).score == points


@pytest.mark.parametrize("country, points", [("FR", 2), ("fr", 2), (" us ", 2), ("ES", 0), (None, 0)])
def test_country(rules, country, points):
    assert score_fit(profile(email=None, title=None, size=None, industry=None, country=country), rules).score == points


@pytest.mark.parametrize("score, grade", [(35, "A"), (20, "A"), (19.99, "B"), (10, "B"), (9, "C"), (0, "C"),
                                          (-0.5, "D"), (-100, "D")])
def test_grade_cutoffs(rules, score, grade):
    assert grade_for(score, rules) == grade


def test_full_profile_sums_and_grades(rules):
    fit = score_fit(profile(email="cmo@globex.example", title="Chief Marketing Officer", size=300,
                            industry="Software", country="FR"), rules)
    assert fit.contributions == {"email": 5, "seniority": 10, "function": 4, "company_size": 6, "industry": 3,
                                 "country": 2}
    assert fit.score == 30 and fit.grade == "A"
    journey = score_fit(profile(), rules)  # the persona of the journey test
    assert (journey.score, journey.grade) == (14, "B")
    assert score_fit(profile(email="x@rivalscore.example"), rules).grade == "D"
    assert score_fit(None, rules).score == 0


def test_grade_order():
    assert grade_at_least("A", "B") and grade_at_least("B", "B") and not grade_at_least("C", "B")
