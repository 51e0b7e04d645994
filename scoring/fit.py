"""FIT: how close a contact is to the ideal customer profile, from profile data alone.

Fit does not decay: it describes who the contact is, not what they did.  It is recomputed
from scratch on every profile update (the state keeps only the result).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import ContactProfile
from .rules import GRADES, Rules


@dataclass(frozen=True, slots=True)
class Fit:
    score: float
    grade: str  # "A" | "B" | "C" | "D"
    contributions: dict[str, float] = field(default_factory=dict)


def grade_for(score: float, rules: Rules) -> str:
    a, b, c = rules.fit.grade_cutoffs
    return "A" if score >= a else "B" if score >= b else "C" if score >= c else "D"


def grade_at_least(grade: str, minimum: str) -> bool:
    """'A' is the best grade: grade_at_least('A', 'B') is True."""
    return GRADES.index(grade) <= GRADES.index(minimum)


def score_fit(profile: ContactProfile | None, rules: Rules) -> Fit:
    """Score a profile against the ideal customer profile; ``None`` means "nothing known"."""
    f = rules.fit
    c: dict[str, float] = {}
    if profile is None:
        return Fit(0.0, grade_for(0.0, rules), c)

    domain = _email_domain(profile.email)
    if domain is None:
        c["email"] = f.missing_email_points
    elif f.competitor_re.fullmatch(domain):
        c["email"] = f.competitor_points
    elif f.free_mail_re.fullmatch(domain):
        c["email"] = f.free_mail_points
    else:
        c["email"] = f.professional_email_points

    title = (profile.job_title or "").lower()
    if title:
        for name, bands in (("seniority", f.seniority), ("function", f.function)):
            for band in bands:
                if band.pattern.search(title):
                    c[name] = band.points
                    break

    size = profile.company_size
    if size is None:
        c["company_size"] = f.unknown_company_size_points
    else:
        for band in f.company_size:
            if band.min <= size and (band.max is None or size <= band.max):
                c["company_size"] = band.points
                break

    industry = (profile.industry or "").strip().lower()
    if industry:
        c["industry"] = f.industry_points if f.industry_re.search(industry) else f.other_industry_points

    country = (profile.country or "").strip().upper()
    if country:
        c["country"] = f.country_points if country in f.target_countries else f.other_country_points

    c = {k: v for k, v in c.items() if v != 0.0}
    total = sum(c.values())
    return Fit(total, grade_for(total, rules), c)


def _email_domain(email: str | None) -> str | None:
    if not email:
        return None
    local, at, domain = email.strip().rpartition("@")
    domain = domain.strip().lower().rstrip(".")
    if not at or not local or not domain:
        return None  # malformed: treated as missing (validate_profile rejects it upstream)
    return domain


def buying_role(profile: ContactProfile, rules: Rules) -> str:
    """The contact's buying-group role from its job title ([accounts.roles], first match), or ""."""
    title = (profile.job_title or "").lower()
    if title:
        for band in rules.accounts.roles:
            if band.pattern.search(title):
                return band.label
    return ""


def company_domain(profile: ContactProfile, rules: Rules) -> str | None:
    """The company's web domain from a professional e-mail address (not free mail, not a
    competitor): how a contact with no account membership is grouped into an account."""
    domain = _email_domain(profile.email)
    f = rules.fit
    if domain is None or f.free_mail_re.fullmatch(domain) or f.competitor_re.fullmatch(domain):
        return None
    return domain
