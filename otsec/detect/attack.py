"""MITRE ATT&CK for ICS: the techniques and tactics otsec's rules refer to."""

from __future__ import annotations

TACTICS = {
    "TA0100": "Collection",
    "TA0101": "Command and Control",
    "TA0102": "Discovery",
    "TA0103": "Evasion",
    "TA0104": "Execution",
    "TA0105": "Impact",
    "TA0106": "Impair Process Control",
    "TA0107": "Inhibit Response Function",
    "TA0108": "Initial Access",
    "TA0109": "Lateral Movement",
    "TA0110": "Persistence",
}

#: technique id -> (name, tactic ids)
TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T0801": ("Monitor Process State", ("TA0100",)),
    "T0814": ("Denial of Service", ("TA0107",)),
    "T0815": ("Denial of View", ("TA0105",)),
    "T0816": ("Device Restart/Shutdown", ("TA0107",)),
    "T0826": ("Loss of Availability", ("TA0105",)),
    "T0830": ("Adversary-in-the-Middle", ("TA0100",)),
    "T0831": ("Manipulation of Control", ("TA0105",)),
    "T0835": ("Manipulate I/O Image", ("TA0107",)),
    "T0836": ("Modify Parameter", ("TA0106",)),
    "T0839": ("Module Firmware", ("TA0110", "TA0106")),
    "T0843": ("Program Download", ("TA0109",)),
    "T0845": ("Program Upload", ("TA0100",)),
    "T0846": ("Remote System Discovery", ("TA0102",)),
    "T0848": ("Rogue Master", ("TA0108",)),
    "T0855": ("Unauthorized Command Message", ("TA0106",)),
    "T0856": ("Spoof Reporting Message", ("TA0103", "TA0106")),
    "T0858": ("Change Operating Mode", ("TA0104", "TA0103")),
    "T0861": ("Point & Tag Identification", ("TA0100",)),
    "T0869": ("Standard Application Layer Protocol", ("TA0101",)),
    "T0872": ("Indicator Removal on Host", ("TA0103",)),
    "T0878": ("Alarm Suppression", ("TA0107",)),
    "T0888": ("Remote System Information Discovery", ("TA0102",)),
    "T0892": ("Change Credential", ("TA0107",)),
}


def technique_url(tid: str) -> str:
    return f"https://attack.mitre.org/techniques/{tid}/"


def tactic_url(tid: str) -> str:
    return f"https://attack.mitre.org/tactics/{tid}/"
