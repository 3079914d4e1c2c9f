"""How a command line is split into words before a command sees it."""

from commands.router import command_name, split


def test_r4_candidate_list_may_have_spaces_after_commas():
    name, args = split("/incident-time T1 10023, 10024, 10025 add 5 network down")
    assert name == "/incident-time"
    assert args[:3] == ["T1", "10023,10024,10025", "add"]


def test_reason_keeps_its_commas_and_spaces():
    _, args = split("/incident-time T1 10023 add 5 network down, room 3")
    assert " ".join(args[4:]) == "network down, room 3"


def test_notice_text_is_left_as_written():
    _, args = split("/notice T1 See task 3, 4 and 5: the unit is kg, not g.")
    assert " ".join(args[1:]) == "See task 3, 4 and 5: the unit is kg, not g."


def test_r13_notice_text_keeps_its_line_breaks():
    _, args = split("/notice T1 Task 3:\n- the unit is kg\n\n- n = 10 \n")
    assert args == ["T1", "Task 3:\n- the unit is kg\n\n- n = 10"]


def test_a_command_name_typed_in_full_width_names_the_same_command():
    assert split("／incident-time T1 10023 add 5 x")[0] == "/incident-time"
    assert split("／ＣＡＮＤＩＤＡＴＥ T1 10023")[0] == "/candidate"
    # Only the name: the arguments stay as typed.
    assert split("/notice T1 ５ minutes more")[1] == ["T1", "５ minutes more"]


def test_the_change_log_names_the_command_as_it_reads_it():
    assert command_name("／ｉｎｃｉｄｅｎｔ-ｔｉｍｅ T1 10023 add 5 x") == "/incident-time"
    assert command_name("reopen T1 10023 until-close x") == "/reopen"
    assert command_name("  ") == "examdesk"


def test_an_unknown_command_is_quoted_as_typed(world):
    refused = world.run("/ﬁx T1")
    assert not refused.ok and "There is no command /ﬁx." in refused.text
    refused = world.run("/exam\u200b T1")
    assert "There is no command /exam<U+200B>." in refused.text
