"""RT-15 in a real browser: headless Chromium opens the first agent's offer link, clicks Accept
and sees the confirmation; a second agent's browser then opens theirs and sees "already
accepted". Screenshots of each page go to the folder given. Exit status 0 when all holds."""
import os, shutil, sys
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

first_link, second_link, shots = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(shots, exist_ok=True)


def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=412,915"):
        options.add_argument(flag)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver), options=options)


agent = browser()
try:
    agent.get(first_link)
    WebDriverWait(agent, 10).until(ready.presence_of_element_located((By.ID, "accept")))
    assert agent.find_element(By.ID, "lead-name").text == "Paige Browser", agent.page_source
    assert "$350,000" in agent.find_element(By.ID, "lead-price").text, agent.page_source
    assert "more minute" in agent.find_element(By.ID, "remaining").text, agent.page_source
    agent.save_screenshot(os.path.join(shots, "offer-open.png"))
    agent.find_element(By.ID, "accept").click()
    WebDriverWait(agent, 10).until(ready.presence_of_element_located((By.ID, "outcome")))
    assert "You accepted this lead" in agent.find_element(By.ID, "outcome").text, agent.page_source
    agent.save_screenshot(os.path.join(shots, "offer-accepted.png"))
finally:
    agent.quit()

other = browser()
try:
    other.get(second_link)
    WebDriverWait(other, 10).until(ready.presence_of_element_located((By.ID, "outcome")))
    assert "already accepted" in other.find_element(By.ID, "outcome").text, other.page_source
    assert not other.find_elements(By.ID, "accept"), "no Accept button once the lead is taken"
    other.save_screenshot(os.path.join(shots, "offer-taken.png"))
finally:
    other.quit()
print("browser: accepted, and the second agent saw it was already accepted")
