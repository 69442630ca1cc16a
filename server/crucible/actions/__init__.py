"""AI code actions: quick fixes and rewrites offered from the editor's own menus.

Two halves, as LSP splits them. ``catalog`` lists actions from the request and the document
alone (no provider call, a few milliseconds); each carries its ``ListedAction`` (``listed``)
as data, bounded and checked when it comes back. ``service`` resolves one: it asks the chat
pool (``prompt``), takes the code out of the answer (``answer``), fits it to the target and
diffs it into minimal edits (``edits``), and checks the edited code before handing it back
(``validation``).
"""
