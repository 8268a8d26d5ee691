from bot.entry.cli import main

main(prog_name="petitionbot")
