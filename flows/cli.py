def main():
    print("mpgen")
