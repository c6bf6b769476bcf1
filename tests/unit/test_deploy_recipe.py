"""The deployment recipe the deployment test runs is the one in docs/DEPLOYMENT.md."""

from __future__ import annotations

from tests.stack.deploy_recipe import recipe_steps


def test_the_doc_holds_every_step_in_order() -> None:
    steps = recipe_steps()
    assert [s.name for s in steps] == ["venv", "config", "start", "plugin", "client", "instance"]
    assert [s.name for s in steps if s.background] == ["start"]
    venv = steps[0].script
    assert 'pip" install -q -r requirements.txt' in venv, venv


def test_a_marked_block_is_read_as_written() -> None:
    text = (
        "<!-- deploy-test: settings (the test sets its own values) -->\n```sh\nexport A=1\n```\n"
        'prose\n<!-- deploy-test: one -->\n```sh\necho "$A" | cat\n```\n'
        "```sh\nnot marked\n```\n<!-- deploy-test: two (background) -->\n```sh\nserve\n```\n"
    )
    steps = recipe_steps(text)
    assert [(s.name, s.script, s.background) for s in steps] == [
        ("one", 'echo "$A" | cat', False),
        ("two", "serve", True),
    ]
