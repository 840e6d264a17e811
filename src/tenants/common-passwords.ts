/**
 * A compact, offline list of the most common passwords and their base words, drawn from the
 * published top-password lists (leaked-credential rankings), keyboard walks and the names, teams,
 * pets and words they are built from. 1359 entries, whitespace-separated, lowercase.
 *
 * `password-policy.ts` normalises a candidate before looking it up (case, leetspeak, leading and
 * trailing digits and symbols, doubling), so each entry also covers its usual variants:
 * `password` refuses `Password2024!`, `P@ssw0rd!!!!` and `passwordpassword`.
 *
 * Kept as a module rather than a .txt file so that the compiled build carries it with no copy step
 * (and outside a `data/` folder, which .gitignore reserves for the runtime data dir).
 * To extend it, add words in lowercase; order does not matter.
 */
export const COMMON_PASSWORDS_TEXT = `
11111 123456qwerty 1234abcd 1234qwer 123abc 123asd 123qwe 123qweasd 123qweasdzxc 1a2s3d4f 1q1q1q 1q2w3e
1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y 1q2w3e4r5t6y7u 1q2w3e4r5t6y7u8i 1q2w3e4r5t6y7u8i9o0p 1qaz 1qaz2wsx
1qaz2wsx3edc 1qaz2wsx3edc4rfv 1qazxsw2 1qazxsw23edc 1qazxsw23edcvfr4 2w2w2w 2wsx 2wsx3edc 3edc 49ers 4rfv 5tgb
6yhn 7ujm a1b2c3 a1b2c3d4 aaa111 aaaaa aaaaaa aaaaaaaa aaron abc123 abc12345 abcabc abcd abcd1234 abcde abcdef
abcdefg abcdefgh abcdefghijkl abcdefghijklmnop abcdefghijklmnopqrstuvwxyz abigail access access14 accord adam
admin admin123 adminadmin administrator administrator1 ajax aladdin alan alaska albert alexander alexis alice
allstar always amanda amazon amber amen america amy anarchy andrea andrew android angel angel1 angel777 angela
angels angels2 ann anna anthony anything apple apple123 april aqwzsx aragorn architect ariel arsenal arsenal1
arthur asd123 asdasd asdf asdf1234 asdfasdf asdfgh asdfghjkl asdfghjkl1 asdfghzxcvbn asdfjkl asdfqwer ash
ashley asshole astros audi audi_a4 august austin australia autumn awesome azerty azertyuiop baby babyboy
babygirl backup badboy badgirl bailey bambi banana bandit barbara barcelona barney baseball baseball123
basketball bastard batman batman123 battlefield bayern beach bear bear1 bears bears1 beatles beautiful beckham
beer bella belle benfica bengals benjamin berlin besiktas best bestest bestfriend betty beverly bible bigboy
bigdaddy bigdog bigmoney bigtits bilbo bills billy birthday bitch bitcoin black blackbird blackcat blackdog
blackstar blank blazers blessed blessing blood bloody blue blueberry bluebird bluesky bmw bmwm3 bobby boca
boobs boston boxing brandon braves brazil brenda brian brittany broncos brother browns bruce bryan buccaneers
buddies buddy bulbasaur bulls bunny bunny1 business buster butterfly california callofduty camaro camel canada
candy cannabis captain caramel cardinals carl carol carolyn carpediem cash cat cat1 catherine cats celtic
celtics champion champions change changeme changeme123 chaos chargers charizard charles charlie charlotte
cheese cheeseburger cheetah chelsea chelsea1 cherry cheryl chevrolet chevy chewbacca chicago chiefs children
china chloe chocolate christ christian christina christine christmas christopher church cigarette cinderella
citizens city civic clippers cobra cock coco code coder coding coffee coldplay colts comein company computer
computer1 connect connection cookie cookies cool cooldude coolgirl coolguy corinthians correcthorse
correcthorsebatterystaple corvette corvette1 counterstrike cowboy cowboys cowboys1 cr7 crazy cricket crown
crystal cubs cuddle cupcake cute cyber cynthia dad daddy daisy dallas damn danger dangerous daniel danielle
darthvader database daughter david dead death debian deborah debra december default default123 demo demo1234
demon denise dennis denver desktop destiny developer devil diablo diamond diamonds diana diane dick docker
dodge dodgers dog dog1 dogs dollar dollars dolphin dolphins dolphins1 donald donna dontforget doris dorothy
dortmund dota douglas dracula dragon dragon1 dragon123 dragons dream dreamer dreams drums dsa321 ducati
dumbledore dylan eagle eagle1 eagles eagles1 earth easter edward elijah elizabeth elmo elsa emerald emily
eminem emma empty england enter entry eric ethan eugene evelyn everton everybody everything evil ewq321 f150
facebook faith falcon falcons falcons1 fall family father february federer fenerbahce ferrari ferrari1 fire
firefly firstlast fisher fishing flame flamengo florida flower flowers football football123 ford forever
forgetme fortnite fortune fox fox1 france frances frank freedom friday friend friends frodo frodo1 frozen
fuckme fuckoff fuckyou fullname funny gabriel galatasaray galaxy game gamer games gaming gandalf gandalf1
gangster ganja ganon garfield gary george gerald germany giants ginger github gitlab gloria god godisgood goku
golang gold golden golf golfer gollum goodboy goodbye goodgirl goofy google gorgeous grace green greenday
gregory gryffindor guest guest123 guest1234 guitar gunners hacked hacker hacking hahaha hakunamatata halloween
halo hammers hannah happiness happy harley harold harrypotter hawaii heat heather heaven heaven1 hehehe helen
hell hello hello1 hello123 hellokitty helloworld henry hermione hero heroes hey hi hidden highlife hjkl hobbit
hockey hogwarts holiday honda honey honeybee hope horny horse horse1 horses hotstuff hottie hugs hulk hunter
hunting hurricane iamawesome iamcool iamgod iamthebest ice ilovedad ilovegod ilovejesus iloveme ilovemom
ilovemycat ilovemydog ilovemyfamily ilovemykids ilovemyself iloveu iloveyou iloveyou123 iloveyou2 imissyou
imthebest india insane instagram inter internet internet1 iphone ironman isabella island italy jack jacob
jacqueline jaguar jaguars james janet janice january japan jasmine jasmine1 jason java javajava javascript
jazz jean jedi jeep jeffrey jenkins jennifer jeremy jerry jesse jessica jesus jets jewel jkl jkljkl joan joe
john johnny jonathan jordan jordan23 jose joseph joshua joyce juan judith judy julia julie july june justice
justin juventus karen katherine kathleen kathryn kayla keith kelly kevin keyboard kids killer killer1 king
kings kirby kiss kisses kitten kitty kitty1 knicks knight knights knuckles kobe24 kotlin kubernetes kyle
lakers laptop larry lasvegas laura lauren lawrence lazio leagueoflegends lebron leeds legend legends legolas
lemon leopard letmein letmein1 letmein123 letmeinplease liberty lifegoeson lifeisgood lightning lightsaber
lilwayne lily linda link linkedin linkinpark linux lion lion1 lions lions1 lisa little littleone liveforever
livelife liverpool liverpool1 lkjhgfdsa lmao logan login login123 logon lol london lord louis love123 lovely
loveme lover lovers loveyou lucifer lucky lucky7 lucy macintosh macos madison madness maggie magic magical
manager manchester mango manutd march margaret maria marie marijuana marilyn mariners mario mark marlboro mars
martha martini mary master master123 masterkey matrix matrix1 matrix123 matthew mavericks max may megaman
megan melissa mercedes messi metallica mets mewtwo mexico miami michael michael123 michaeljordan michelle
mickey microsoft milan million millionaire minecraft minnie miracle misty mnbvcxz moana modem molly mom mommy
monday money monitor monkey monkey1 monkey123 monkeys moon mordor morpheus morpheus1 mother mouse mulan murder
music mustang mustang1 myboy myfamily mygirl mykids mylife mylove myname mynameis mypassword mysecret mysql
myworld nadal nancy napoli naruto natalie nathan nemo neo neo123 network network1 neverforget nevergiveup
newcastle newpassword newport newyear newyork neymar nicholas nickname nicole niners ninja nintendo nirvana
nissan noah nobody nokia nopassword northstar nothing nothing1 november nuggets ocean october office okmijn
olaf olivia onetwothree onetwothreefour online open opensesame openup oracle oracle1 orange orange1 oreo
outlaw overwatch p4ssword pa55word pacers packers padres palmeiras pamela panda panthers paradise paris party
partytime pass pass123 passion passpass passw0rd passwd password password1 password123 password1234
password12345 passwordpassword passwort pasta patricia patrick patrick1 patriots paul peace peach pearl penis
pepper perl peter philip phillies php piano pikachu pink pirate pirates pistons pizza planet platinum player
player1 playstation plokij pluto poiuytrewq pokemon pokemon1 pony pony1 pooh popstar porn porno porsche
porsche911 porto postgres power praise pretty prince princesa princess princess123 princeton printer private
programmer psv puppy puppy1 purple pussy python q1w2e3r4 q1w2e3r4t5 q1w2e3r4t5y6 q2w3e4r5 qazwsx qazwsx1
qazwsxedc qazwsxedcrfv qazwsxedcrfvtgb qazwsxedcrfvtgbyhn qazxsw qqqqqq qqqqqqqq queen qwaszx qwaszxqwaszx
qwe123 qweasd qweasdzxc qweasdzxc123 qweqwe qwer1234 qwert qwerty qwerty1 qwerty12 qwerty123 qwerty1234
qwerty123456 qwertyasdfgh qwertyqwerty qwertyui qwertyuiop qwertyuiop1 qwertyuiopasdfghjkl
qwertyuiopasdfghjklzxcvbnm qwertz qwertzuiop rachel racing raiders rainbow ralph rams randy ranger rangers
rangers1 ravens raymond realmadrid rebecca rebel red redbird redrose redskins redsox redsox1 redstar
rememberme rich richard rivendell river robert roblox rockets rocknroll rockstar rockstar1 rocky rofl roger
roma romance ronald ronaldo root root123 rootroot rose roses router roy royal ruby rugby russell russia rust
ruth ryan sadie saints samantha samsung samuel samurai samus sandra santos sapphire sara sarah satan saturday
sauron savior schalke scooby scott sea seahawks sean seattle secret secret123 secure security september server
service sesame sex sexsex sexy shadow shadow1 shadow123 shadows shark shark1 sharks sharon sherlock shirley
shit silver silverado simba singer sister skater skywalker slipknot slytherin smallville smile smiley smoke
smoking snape snoopy snow snowball snowflake soccer soldier someone something son sonic sophia sophie spain
spiderman spongebob sporting spring spurs spurs1 squidward squirtle star starcraft stars startrek starwars
starwars1 steam steelers stephanie stephen steven stoner storm strawberry streamer strong summer sun sunday
sunflower suns sunshine sunshine123 superboy supergirl superman superman123 superstar superuser support surfer
surfing surname susan sweetheart sweetie sweety swift sydney sysadmin system system32 tails tea teddy
teddybear temp temporary temppass tennis tequila teresa terry test test123 test1234 tester testing texans
texas thebest theresa thomas thor thug thunder thursday tiger tiger1 tigers tigger tiktok timothy tinkerbell
titans together toor topsecret tornado toronto toyota trinity trinity1 trustme trustno trustno1 trustno11
trustnoone tuesday tupac turtle twitch twitter tyler ubuntu uiop unicorn united universe unknown usa user
user1234 username vader vagina vampire vanilla vegas victoria victory vikings villa vincent violet viper
virginia vista vodka voldemort volleyball walter warcraft warrior warriors wassup wayne webmaster wednesday
weed weekend welcome welcome1 welcome123 welcome2024 whatever whatever1 whatsup whiskey white whitecat
whitesox wifi william willie windows windows10 windows7 wine winner winners winnie winter winxp wireless wolf
wolf1 wolves wonder wonderful wonderwoman woods work worldofwarcraft wwwwww wxcvbn xbox xxxxx xxxxxx yamaha
yankees yankees1 yellow yellowbird yoda yolo youtube youtuber yoyoyo ytrewq yxcvbnm zachary zaq12wsx
zaq12wsxcde3 zaq12wsxcde34rfv zaq1xsw2 zaq1xsw2cde3 zaq1zaq1 zelda zidane zion zombie zxcv zxcv1234 zxcvasdf
zxcvbn zxcvbnm zxcvbnm1 zyxwvutsrqponm zzzzz zzzzzz
`;
