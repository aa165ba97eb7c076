"""The course's grading harness.

Data flows one way: the CLI (`__main__`) runs pytest with `plugin`; the suites under
`public/` and `hidden/` reach student code only through `submission.Submission`, which talks
to an untrusted child process (`_child.py`) over a private pipe; results come back as data
(`wire`), and `report` turns the collected outcomes into grade.json, results.json and the
terminal table.
"""
