"""``voicelab-voice``: recordings (folders, files, URLs) to a served voice, through the same steps as the
separate commands. ``options`` says which flag goes to which step, ``sources`` brings the recordings into
``raw_audio/NAME/``, ``state`` remembers what is done, ``run`` runs the steps in order."""
